from swifti2v.cli.main import entry

entry()
