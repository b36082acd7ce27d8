# Multi-stage build: a static-enough release binary on a distroless, non-root base.
# SQLite lives on the /var/lib/pwreset volume; for PostgreSQL set PWRESET_DATABASE_URL.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pwreset --bin pwreset-notify \
 && mkdir -p /out/data \
 && cp target/release/pwreset target/release/pwreset-notify /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pwreset /usr/local/bin/pwreset
# The notifier ships in the same image: run it with --entrypoint /usr/local/bin/pwreset-notify.
COPY --from=build /out/pwreset-notify /usr/local/bin/pwreset-notify
COPY --from=build --chown=65532:65532 /out/data /var/lib/pwreset
WORKDIR /var/lib/pwreset
ENV PWRESET_LISTEN=0.0.0.0:50051 \
    PWRESET_METRICS_LISTEN=0.0.0.0:9090 \
    PWRESET_DATABASE_URL=sqlite:///var/lib/pwreset/pwreset.db?mode=rwc \
    PWRESET_LOG_FORMAT=json
EXPOSE 50051 9090
VOLUME ["/var/lib/pwreset"]
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pwreset"]
CMD ["serve"]
