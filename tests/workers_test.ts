/**
 * Several workers on one port (`runWorkers`): what they share through the coordinator holds
 * whichever worker a connection lands on (connection and session limits, bans, bandwidth), each
 * leases passive ports from its own slice, a drain lets every worker's transfers finish, and a
 * crashed worker is replaced without touching the other's sessions.
 *
 * The kernel picks a worker per connection (SO_REUSEPORT hashes the client's port), so a test
 * that needs a session on each worker opens connections until it has one: the worker is known
 * from the passive port its EPSV announces.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import { Effect, Exit, Scope } from "effect"
import { FtpLogger } from "../src/log.ts"
import type { ServerOptions } from "../src/options.ts"
import { GracefulShutdown } from "../src/runtime.ts"
import { type RunningWorkers, runWorkers } from "../src/workers/coordinator.ts"
import { eventually, RawClient, readAll, sleep, sparseFile, timed } from "./helpers.ts"
import type { FixtureData } from "./workers_fixture.ts"

const FIXTURE = new URL("./workers_fixture.ts", import.meta.url)
const PORTS_PER_WORKER = 20

interface Running {
  readonly workers: RunningWorkers
  readonly root: string
  readonly logs: string[]
  /** What the coordinator registered for the first stop signal (its drain). */
  readonly drains: Effect.Effect<void>[]
}

/** Run two workers with `options` (a fresh root and passive range) around `f`. */
const withWorkers = async (options: ServerOptions, f: (running: Running) => Promise<void>) => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-workers-" }))
  const from = 20000 + Math.floor(Math.random() * 10000)
  const logs: string[] = []
  const drains: Effect.Effect<void>[] = []
  const scope = Effect.runSync(Scope.make())
  try {
    const workers = await Effect.runPromise(
      runWorkers({
        workers: 2,
        module: FIXTURE,
        options: {
          host: "127.0.0.1",
          port: 0,
          authFailedTimeout: 0,
          passivePorts: [from, from + 2 * PORTS_PER_WORKER - 1],
          ...options,
        },
        data: { root } satisfies FixtureData,
        onLog: (line) => logs.push(line),
      }).pipe(
        Scope.provide(scope),
        Effect.provideService(GracefulShutdown, { onSignal: (stop) => Effect.sync(() => void drains.push(stop)) }),
        Effect.provide(FtpLogger.layer({ write: (line) => logs.push(line) })),
      ),
    )
    await f({ workers, root, logs, drains })
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Deno.remove(root, { recursive: true })
  }
}

/** Which worker leased passive `port`. */
const workerOf = (workers: RunningWorkers, port: number): number =>
  workers.slices.findIndex((slice) => slice !== null && slice[0] <= port && port <= slice[1])

interface Placed {
  readonly client: RawClient
  /** The passive port its EPSV leased (listening, not yet connected). */
  readonly dataPort: number
}

/**
 * A session on each worker: connections are opened (and logged in as `user`) until each worker
 * has one; the others are closed. `logout`: each is logged out (REIN) once its worker is known.
 */
const onEachWorker = async (running: Running, logout = false): Promise<Placed[]> => {
  const found: Array<Placed | undefined> = [undefined, undefined]
  try {
    for (let tries = 0; tries < 40 && found.includes(undefined); tries++) {
      const client = await RawClient.connect(running.workers.port)
      try {
        await client.login()
        assert.equal((await client.command("TYPE I")).code, 200)
        const dataPort = await client.epsvPort()
        if (logout) assert.equal((await client.command("REIN")).code, 220)
        const worker = workerOf(running.workers, dataPort)
        assert.ok(
          worker >= 0,
          `EPSV port ${dataPort} is in no worker's slice ${JSON.stringify(running.workers.slices)}`,
        )
        if (found[worker] !== undefined) continue
        found[worker] = { client, dataPort }
      } finally {
        if (!found.some((placed) => placed?.client === client)) client.close()
      }
    }
    assert.ok(!found.includes(undefined), "40 connections in a row all went to one worker")
    return found as Placed[]
  } catch (error) {
    for (const placed of found) placed?.client.close()
    throw error
  }
}

/** Start RETR of `name` on `placed`; resolves with the bytes read and the final reply's code. */
const download = async (placed: Placed, name: string): Promise<{ bytes: number; code: number }> => {
  const data = await Deno.connect({ hostname: "127.0.0.1", port: placed.dataPort })
  assert.equal((await placed.client.command(`RETR ${name}`)).code, 150)
  const bytes = (await timed(readAll(data), 30_000, `RETR ${name}`)).length
  return { bytes, code: (await placed.client.readReply(10_000)).code }
}

/** Open `count` connections at once; the code of each greeting ("closed": none came). */
const greetings = (port: number, count: number): Promise<Array<{ code: number | "closed"; client?: RawClient }>> =>
  Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const client = await RawClient.connect(port)
        return { code: client.greeting.code, client }
      } catch {
        return { code: "closed" as const }
      }
    }),
  )

const closeAll = (opened: ReadonlyArray<{ client?: RawClient }>) => {
  for (const { client } of opened) client?.close()
}

/** Whether a connection to `port` is refused by the kernel. */
const refused = async (port: number): Promise<boolean> => {
  try {
    ;(await Deno.connect({ hostname: "127.0.0.1", port })).close()
    return false
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused
  }
}

Deno.test("two workers share the control port; each announces passive ports from its own half of the range", async () => {
  await withWorkers({}, async (running) => {
    const [from, to] = [running.workers.slices[0]![0], running.workers.slices[1]![1]]
    assert.deepEqual(running.workers.slices, [[from, from + PORTS_PER_WORKER - 1], [from + PORTS_PER_WORKER, to]])
    assert.ok(running.logs.some((line) => line.includes("worker 1 of 2")))
    assert.ok(running.logs.some((line) => line.includes("worker 2 of 2")))
    await Deno.writeTextFile(`${running.root}/hello.txt`, "hello from a worker\n")
    const placed = await onEachWorker(running)
    try {
      for (const session of placed) {
        assert.deepEqual(await download(session, "hello.txt"), { bytes: 20, code: 226 })
      }
    } finally {
      for (const { client } of placed) client.close()
    }
  })
})

Deno.test("maxConsPerIp counts the connections of both workers", async () => {
  await withWorkers({ maxConsPerIp: 2 }, async (running) => {
    const opened = await greetings(running.workers.port, 8)
    try {
      const codes = opened.map((o) => o.code).sort()
      assert.deepEqual(codes, [220, 220, 421, 421, 421, 421, 421, 421])
    } finally {
      closeAll(opened)
    }
    // Their slots come back when they close, whichever worker held them.
    await eventually(
      async () => {
        const again = await greetings(running.workers.port, 2)
        closeAll(again)
        return again.every((o) => o.code === 220)
      },
      5000,
      "two new connections after the first two closed",
    )
  })
})

Deno.test("maxCons counts the connections of both workers", async () => {
  await withWorkers({ maxCons: 3 }, async (running) => {
    const opened = await greetings(running.workers.port, 8)
    try {
      assert.deepEqual(opened.map((o) => o.code).sort(), [220, 220, 220, 421, 421, 421, 421, 421])
    } finally {
      closeAll(opened)
    }
    await eventually(
      async () => {
        const again = await greetings(running.workers.port, 3)
        closeAll(again)
        return again.every((o) => o.code === 220)
      },
      5000,
      "three new connections after the first three closed",
    )
  })
})

Deno.test("maxSessionsPerUser counts the logins of both workers", async () => {
  await withWorkers({ maxSessionsPerUser: 1 }, async (running) => {
    // Each worker has an open connection and no login.
    const placed = await onEachWorker(running, true)
    try {
      await placed[0].client.login()
      assert.equal((await placed[1].client.command("USER user")).code, 331)
      const second = await placed[1].client.command("PASS pass")
      assert.equal(second.code, 530, second.text)
      assert.match(second.text, /Too many sessions/)
      // The first session's logout frees the slot for the other worker.
      assert.equal((await placed[0].client.command("REIN")).code, 220)
      await eventually(
        async () => {
          await placed[1].client.command("USER user")
          return (await placed[1].client.command("PASS pass")).code === 230
        },
        5000,
        "the login on the other worker",
      )
    } finally {
      for (const { client } of placed) client.close()
    }
  })
})

Deno.test("a ban earned on one worker refuses the address on every worker", async () => {
  await withWorkers({ banAfterFailures: 2, banDuration: 60 }, async (running) => {
    const placed = await onEachWorker(running)
    try {
      const failing = placed[0].client
      assert.equal((await failing.command("REIN")).code, 220)
      assert.equal((await failing.command("USER user")).code, 331)
      assert.equal((await failing.command("PASS wrong")).code, 530)
      assert.equal((await failing.command("USER user")).code, 331)
      assert.equal((await failing.command("PASS wrong")).code, 421, "the second failure bans and closes")
      // Eight new connections: the kernel spreads them over both workers, and every one is refused.
      await eventually(
        async () => {
          const opened = await greetings(running.workers.port, 8)
          closeAll(opened)
          return opened.every((o) => o.code !== 220)
        },
        5000,
        "every new connection refused",
      )
      assert.ok(running.logs.filter((line) => line.includes("refused: banned.")).length >= 8)
      // The sessions already logged in are not cut off.
      assert.equal((await placed[1].client.command("NOOP")).code, 200)
    } finally {
      for (const { client } of placed) client.close()
    }
  })
})

Deno.test("globalWriteLimit is one budget for the downloads of both workers", async () => {
  const rate = 512 << 10
  await withWorkers({ globalWriteLimit: rate }, async (running) => {
    await sparseFile(`${running.root}/big.bin`, 1 << 20)
    const placed = await onEachWorker(running)
    try {
      const t0 = performance.now()
      const results = await Promise.all(placed.map((session) => download(session, "big.bin")))
      const seconds = (performance.now() - t0) / 1000
      assert.deepEqual(results, [{ bytes: 1 << 20, code: 226 }, { bytes: 1 << 20, code: 226 }])
      // 2 MiB at 512 KiB/s is 4 s; a budget per worker would let them through in 2.
      assert.ok(seconds >= 3.5, `both downloads took ${seconds.toFixed(2)} s`)
    } finally {
      for (const { client } of placed) client.close()
    }
  })
})

Deno.test("a drain lets the downloads on both workers finish (226, then 421) and refuses new connections", async () => {
  await withWorkers({ writeLimit: 1 << 20, shutdownGrace: 20 }, async (running) => {
    await sparseFile(`${running.root}/big.bin`, 2 << 20)
    const placed = await onEachWorker(running)
    try {
      const downloads = placed.map((session) => download(session, "big.bin"))
      await sleep(300)
      assert.equal(running.drains.length, 1, "the coordinator registered one drain")
      const drained = Effect.runPromise(running.drains[0])
      await eventually(() => refused(running.workers.port), 3000, "the shared port to close")
      for (const result of await Promise.all(downloads)) assert.deepEqual(result, { bytes: 2 << 20, code: 226 })
      for (const { client } of placed) assert.equal((await client.readReply()).code, 421)
      await timed(drained, 5000, "the drain to end")
    } finally {
      for (const { client } of placed) client.close()
    }
  })
})

Deno.test("a drain while the workers start: no more start, and both runWorkers and the drain end", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-workers-" }))
  const drains: Effect.Effect<void>[] = []
  const scope = Effect.runSync(Scope.make())
  try {
    const starting = Effect.runPromise(
      runWorkers({
        workers: 2,
        module: FIXTURE,
        options: { host: "127.0.0.1", port: 0 },
        data: { root } satisfies FixtureData,
      }).pipe(
        Scope.provide(scope),
        Effect.provideService(GracefulShutdown, { onSignal: (stop) => Effect.sync(() => void drains.push(stop)) }),
        Effect.provide(FtpLogger.layer({ write: () => undefined })),
      ),
    )
    await eventually(() => drains.length === 1, 5000, "the drain to be registered")
    await timed(Effect.runPromise(drains[0]), 10_000, "the drain")
    const workers = await timed(starting, 10_000, "runWorkers")
    assert.ok(workers.started() <= 1, `${workers.started()} workers started after the drain began`)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Deno.remove(root, { recursive: true })
  }
})

Deno.test("a crashed worker is logged and replaced; the other's download runs on, and the crashed one's slots come back", async () => {
  await withWorkers({ writeLimit: 1 << 20, maxCons: 8, maxConsPerIp: 8 }, async (running) => {
    await sparseFile(`${running.root}/big.bin`, 2 << 20)
    await Deno.writeTextFile(`${running.root}/small.txt`, "after the crash\n")
    const [survivor, victim] = await onEachWorker(running)
    try {
      const downloading = download(survivor, "big.bin")
      await sleep(300)
      await Effect.runPromise(running.workers.crash(1))
      assert.ok(await victim.client.closedByServer(5000), "the crashed worker's session is cut")
      assert.deepEqual(await downloading, { bytes: 2 << 20, code: 226 }, "the other worker's download is whole")
      await eventually(() => running.workers.started() === 3, 10_000, "a replacement worker")
      assert.ok(
        running.logs.some((line) => /worker 2 of 2 stopped: stopped by crash\(\); starting a new one/.test(line)),
      )
      // The replacement serves from the same slice.
      const placed = await onEachWorker(running)
      try {
        assert.deepEqual(await download(placed[1], "small.txt"), { bytes: 16, code: 226 })
      } finally {
        for (const { client } of placed) client.close()
      }
      // The survivor holds one slot of eight (in all and from this address); the victim's came back.
      await eventually(
        async () => {
          const opened = await greetings(running.workers.port, 7)
          closeAll(opened)
          return opened.every((o) => o.code === 220)
        },
        5000,
        "seven more connections next to the survivor",
      )
    } finally {
      survivor.client.close()
      victim.client.close()
    }
  })
})

Deno.test("runWorkers refuses a bad worker count, a passive range smaller than the workers, a port in use, and the path jail", async () => {
  const fail = async (config: Partial<Parameters<typeof runWorkers>[0]>) => {
    const exit = await Effect.runPromiseExit(
      Effect.scoped(
        runWorkers({
          workers: 2,
          module: FIXTURE,
          options: { host: "127.0.0.1", port: 0 },
          data: { root: Deno.cwd() } satisfies FixtureData,
          ...config,
        }),
      ),
    )
    assert.equal(exit._tag, "Failure")
    return String(exit._tag === "Failure" ? exit.cause : "")
  }
  // Its renames are exclusive within one worker only.
  assert.match(
    await fail({ data: { root: Deno.cwd(), jail: "path" } satisfies FixtureData }),
    /path jail.*can't be served by several workers/,
  )
  assert.match(await fail({ workers: 0 }), /workers must be a whole number >= 1/)
  assert.match(await fail({ workers: 1.5 }), /workers must be a whole number >= 1/)
  assert.match(
    await fail({ options: { host: "127.0.0.1", port: 0, passivePorts: [30000, 30000] } }),
    /has 1 ports, fewer than the 2 workers/,
  )
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 })
  try {
    const port = (taken.addr as Deno.NetAddr).port
    assert.match(await fail({ options: { host: "127.0.0.1", port } }), /worker 1: /)
  } finally {
    taken.close()
  }
})

Deno.test("maxHashes counts the checksums of both workers, and a crashed worker's come back", async () => {
  await withWorkers({ maxHashes: 1 }, async (running) => {
    await sparseFile(`${running.root}/big`, 64 * 1024 ** 3)
    await Deno.writeTextFile(`${running.root}/small`, "small")
    const placed = await onEachWorker(running)
    const [first, second] = placed.map(({ client }) => client)
    try {
      await first.send("XSHA256 big")
      await eventually(
        async () => (await first.command("STAT")).lines.some((line) => line.includes("Computing SHA-256 of /big")),
        5000,
        "the checksum on the first worker",
      )
      const refused = await second.command("XMD5 small")
      assert.deepEqual([refused.code, refused.text], [450, "Too many checksums are being computed: try again later."])
      await first.send("ABOR")
      assert.deepEqual([(await first.readReply()).code, (await first.readReply()).code], [426, 226])
      assert.equal((await second.command("XMD5 small")).code, 250)
      // The first worker crashes in the middle of another checksum: the coordinator gives its count back.
      await first.send("XSHA256 big")
      await eventually(
        async () => (await first.command("STAT")).lines.some((line) => line.includes("Computing SHA-256 of /big")),
        5000,
        "the second checksum on the first worker",
      )
      assert.equal((await second.command("XMD5 small")).code, 450)
      await Effect.runPromise(running.workers.crash(0))
      await eventually(async () => (await second.command("XMD5 small")).code === 250, 10_000, "the slot given back")
    } finally {
      for (const client of [first, second]) client.close()
    }
  })
})
