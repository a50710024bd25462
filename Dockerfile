# goagent container images. Two flavours from one file:
#
#   docker build -t goagent .                     # default: FROM scratch, the static binary alone
#   docker build -t goagent:debian --target debian .   # Debian slim with bash, git, git-lfs, CA bundle
#
# Version and commit are stamped exactly as `make build` does:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#                --build-arg COMMIT=$(git rev-parse --short HEAD) -t goagent .
#
# Both run `goagent run --once` as uid/gid 65532 with the work directory in
# /azp/_work; configure them with the AZP_* variables (deploy/README.md).

# Plain Dockerfile syntax only (no RUN --mount, no $BUILDPLATFORM), so that
# builders without BuildKit, such as `az acr build`, build it too.

# ---- build: a static binary ----
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
ARG COMMIT=unknown
# The same command as the Makefile's build target (a test in deploy/ keeps
# them equal).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/goagent ./cmd/goagent
# The scratch image's whole file system besides the binary: a user and group
# for uid/gid 65532, its home and work directory, and a world-writable /tmp.
RUN mkdir -p /rootfs/etc /rootfs/azp/_work /rootfs/tmp \
 && echo 'azp:x:65532:65532:goagent:/azp:/sbin/nologin' > /rootfs/etc/passwd \
 && echo 'azp:x:65532:' > /rootfs/etc/group \
 && chown -R 65532:65532 /rootfs/azp \
 && chmod 1777 /rootfs/tmp

# ---- debian: for jobs that need real tools ----
# bash and git run `script`/`bash` steps and checkouts with full fidelity
# (submodules, LFS, every fetch option); ca-certificates serves git and any
# tool the job runs. Add what your pipelines need on top of this stage.
FROM debian:trixie-slim AS debian
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates git git-lfs \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 azp \
 && useradd --uid 65532 --gid 65532 --home-dir /azp --shell /bin/bash azp \
 && mkdir -p /azp/_work \
 && chown -R 65532:65532 /azp
COPY --from=build /out/goagent /usr/local/bin/goagent
ENV HOME=/azp AZP_WORK=/azp/_work
WORKDIR /azp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/goagent", "run", "--once"]

# ---- scratch (default): nothing but the static binary ----
# No shell, no git, no CA bundle in the image: goagent runs script steps in
# its embedded shell, checks out with go-git, and verifies TLS against the
# Mozilla roots compiled into it (golang.org/x/crypto/x509roots/fallback),
# so no ca-certificates copy is needed. A corporate CA goes in SSL_CERT_FILE.
FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build /out/goagent /goagent
ENV HOME=/azp AZP_WORK=/azp/_work
WORKDIR /azp
USER 65532:65532
ENTRYPOINT ["/goagent", "run", "--once"]
