from deepmovie.cli import main

main()
