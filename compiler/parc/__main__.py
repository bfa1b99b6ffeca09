from parc.cli import main

main()
