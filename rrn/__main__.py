from rrn.cli import main

main()
