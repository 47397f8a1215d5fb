#!/bin/sh
# keygate prerm: stop the service before its files go.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop keygate.service >/dev/null 2>&1 || true
	systemctl disable keygate.service >/dev/null 2>&1 || true
fi
