#!/bin/sh
# keygate postrm: on purge, remove the keys, logs and the system user.
# A plain remove keeps them (and /etc/keygate), as Debian packages do.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/keygate /var/log/keygate /etc/keygate
	if getent passwd keygate >/dev/null; then
		userdel keygate || true
	fi
	if getent group keygate >/dev/null; then
		groupdel keygate >/dev/null 2>&1 || true
	fi
fi
