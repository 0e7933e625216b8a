# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, ship only the binary on Debian slim.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY deploy ./deploy
COPY bench ./bench
# The lean production binary (no demo, emulator or test bed). docker-compose.yml builds
# with `FEATURES=demo` for its `emulator` service.
ARG FEATURES=""
RUN cargo build --release --locked --bin redshift-iam-proxy --no-default-features ${FEATURES:+--features "$FEATURES"} \
 && install -m 0755 target/release/redshift-iam-proxy /usr/local/bin/redshift-iam-proxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /usr/local/bin/redshift-iam-proxy /usr/local/bin/redshift-iam-proxy
# The local CA (ca.crt, ca.key) lives in $XDG_STATE_HOME/redshift-iam-proxy; mount a volume there to keep it across containers.
ENV XDG_STATE_HOME=/var/lib
RUN install -d -m 0700 -o 10001 -g 10001 /var/lib/redshift-iam-proxy
USER 10001:10001
EXPOSE 5439 9187
ENTRYPOINT ["/usr/local/bin/redshift-iam-proxy"]
CMD ["--config", "/etc/redshift-iam-proxy/config.toml"]
