from swifti2v.cli.main import main

main()
