from imgsim_index.cli import main

main()
