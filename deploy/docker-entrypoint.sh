#!/bin/sh
# As registry:2's entrypoint: a configuration file as the first argument means
# "serve it" (`docker run stevedore /etc/my/config.yml`); anything else is a
# stevedore command (`serve`, `gc`, `prefetch`, `--help`, …).
set -e
case "$1" in
  *.yml | *.yaml | *.json) set -- serve "$@" ;;
esac
exec node --max-semi-space-size=4 /app/bin/stevedore "$@"
