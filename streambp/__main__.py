"""`python -m streambp`: the streambp command."""
from .cli import main

main()
