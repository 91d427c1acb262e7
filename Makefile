# The README's two commands: `make demo` (the main job) and `make test` (the suite).
.PHONY: demo test install
install:
	scripts/setup.sh
demo:
	scripts/demo.sh
test:
	scripts/test.sh
