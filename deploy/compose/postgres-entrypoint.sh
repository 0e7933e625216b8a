#!/bin/sh
# Runs as root in the postgres container before the stock entrypoint: makes a TLS
# certificate for the host name "postgres" (once), shares the certificate with the
# proxy through the "certs" volume, then starts PostgreSQL with TLS on.
set -eu
if [ ! -f /certs/server.crt ]; then
  openssl req -new -x509 -days 825 -nodes -subj "/CN=postgres" \
    -addext "subjectAltName=DNS:postgres" \
    -keyout /certs/server.key -out /certs/server.crt
fi
chmod 0644 /certs/server.crt
chmod 0600 /certs/server.key
install -o postgres -g postgres -m 0600 /certs/server.key /var/lib/postgresql/server.key
exec docker-entrypoint.sh postgres \
  -c ssl=on \
  -c ssl_cert_file=/certs/server.crt \
  -c ssl_key_file=/var/lib/postgresql/server.key
