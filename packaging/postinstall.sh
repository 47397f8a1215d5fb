#!/bin/sh
# keygate postinst: the system user, ownership of its directories and the
# systemd unit. Run by dpkg with "configure" [<previous version>].
set -e

if ! getent group keygate >/dev/null; then
	groupadd --system keygate
fi
if ! getent passwd keygate >/dev/null; then
	useradd --system --gid keygate --home-dir /var/lib/keygate --no-create-home \
		--shell /usr/sbin/nologin --comment "keygate API key gateway" keygate
fi

chown keygate:keygate /var/lib/keygate /var/log/keygate
chmod 0750 /var/lib/keygate /var/log/keygate
chown root:keygate /etc/keygate /etc/keygate/Caddyfile /etc/keygate/keygate.env
chmod 0750 /etc/keygate
chmod 0640 /etc/keygate/Caddyfile /etc/keygate/keygate.env

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ -n "$2" ]; then
		# An upgrade: restart the service if it runs.
		systemctl try-restart keygate.service >/dev/null || true
	fi
fi

if [ -z "$2" ]; then
	echo "keygate: edit /etc/keygate/Caddyfile (and /etc/keygate/keygate.env), check it with"
	echo "  sudo -u keygate keygate validate --config /etc/keygate/Caddyfile"
	echo "then start it with: systemctl enable --now keygate"
fi
