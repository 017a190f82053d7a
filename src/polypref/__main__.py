from polypref.cli import main

main()
