# The images of the offline compose stack (deploy/compose/offline.yaml), for a
# machine that reaches no registry: scripts/test-stack.sh builds every binary
# static on the host (CGO_ENABLED=0) and puts each image's binaries in its own
# build context, data/stack/images/<target>/; each target copies them FROM
# scratch. /healthcheck (deploy/cmd/healthcheck) is in every image: there is
# no shell, wget or mc for a health check to call.
#
# deploy/offline_test.go checks that the sdevents target runs as the
# Dockerfile's final stage does (user, entrypoint, port, binary paths).

# sdevents: the Dockerfile's final stage without distroless's CA
# certificates, tzdata and /etc/passwd, none of which the stack uses.
FROM scratch AS sdevents
COPY sdevents healthcheck /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sdevents"]

# nats-server, built from the module version cmd/sdevents embeds.
FROM scratch AS nats
COPY nats-server healthcheck /
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]

# MinIO, the version scripts/install-minio.sh pins for the tests.
FROM scratch AS minio
COPY minio healthcheck /
EXPOSE 9000 9001
ENTRYPOINT ["/minio"]
