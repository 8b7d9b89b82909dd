from weightyard.cli import main

main()
