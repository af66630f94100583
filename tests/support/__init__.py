"""What every test folder shares: the test settings (one source for in-process and subprocess
runs), waiting helpers, and the `dltui` subprocess runner."""
