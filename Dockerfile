# Government SMS gateway. Build: docker build -t smsgw .
# Run:   docker run -p 8080:8080 -v smsgw-data:/var/lib/smsgw smsgw
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# postinstall fixes lmdb's commit outcomes (scripts/patch-lmdb.mjs)
COPY scripts/patch-lmdb.mjs ./scripts/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/patch-lmdb.mjs ./scripts/
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SMSGW_DATA_DIR=/var/lib/smsgw \
    SMSGW_HOST=0.0.0.0 \
    SMSGW_PORT=8080
WORKDIR /app
# Non-root user owning only the data volume.
RUN groupadd --system smsgw && useradd --system --gid smsgw --home-dir /app smsgw \
 && mkdir -p /var/lib/smsgw && chown smsgw:smsgw /var/lib/smsgw
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
USER smsgw
VOLUME ["/var/lib/smsgw"]
EXPOSE 8080 2775
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.SMSGW_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM → graceful drain (stop accepting, finish bind windows, flush LMDB).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["start"]
