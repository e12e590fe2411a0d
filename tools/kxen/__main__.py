from kxen.cli import main

main()
