from weightyard.launch import main

main()
