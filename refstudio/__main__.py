from refstudio.cli import main

main()
