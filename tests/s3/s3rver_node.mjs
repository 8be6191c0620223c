/**
 * s3rver (a real S3-compatible server, pinned in deno.json) in a Node.js process of its own, for
 * the tests and the benchmark:
 * `node --openssl-legacy-provider tests/s3/s3rver_node.mjs DIRECTORY BUCKET [PORT]`. It prints
 * `{"port":N}` once it listens, and serves until killed.
 *
 * Node.js rather than Deno: s3rver makes ListObjectsV2 continuation tokens with DES, which Deno's
 * `node:crypto` lacks and Node.js 17+ has only with `--openssl-legacy-provider`.
 */
import process from "node:process"
import S3rver from "s3rver"

const [directory, bucket, port = "0"] = process.argv.slice(2)
const server = new S3rver({
  port: Number(port),
  address: "127.0.0.1",
  directory,
  silent: process.env.S3RVER_LOG === undefined,
  configureBuckets: [{ name: bucket, configs: [] }],
})
const address = await server.run()
console.log(JSON.stringify({ port: address.port }))
