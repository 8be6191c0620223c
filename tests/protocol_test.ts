import { deepStrictEqual as assertEquals, strictEqual, throws } from "node:assert/strict"
import { CommandFramer, type Framed } from "../src/protocol/framer.ts"
import { commandAfterSynch, parseCommand } from "../src/protocol/command.ts"
import { formatReply, quotePath } from "../src/protocol/reply.ts"
import { formatEpsv, formatPasv, parseEprt, parsePort } from "../src/protocol/address.ts"
import { isIPv4, plainAddress } from "../src/net/address.ts"
import { basename, dirname, resolveVirtual } from "../src/protocol/path.ts"
import {
  DEFAULT_MLSX_FACTS,
  featMlstLine,
  formatListLine,
  formatMlsxLine,
  formatNlstLine,
  MLSX_FACTS,
  mlsxPerm,
  mlsxTime,
  parseMlsxTime,
  parseOptsMlst,
} from "../src/protocol/listing.ts"
import { FromNetworkAscii, ToNetworkAscii } from "../src/protocol/ascii.ts"
import type { FileInfo } from "../src/fs/filesystem.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (...parts: Array<string | number[]>): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === "string" ? [...enc.encode(p)] : p)))
const line = (text: string): Framed => ({ kind: "line", text })
const tooLong: Framed = { kind: "tooLong" }

/** Every framed result currently available. */
const drain = (framer: CommandFramer): Framed[] => {
  const out: Framed[] = []
  for (let f = framer.next(); f !== undefined; f = framer.next()) out.push(f)
  return out
}

// --- framer ---

Deno.test("framer splits CRLF and bare LF lines and drops the CR", () => {
  const framer = new CommandFramer()
  framer.push(bytes("USER bob\r\nPASS x\nNOOP\r\n"))
  assertEquals(drain(framer), [line("USER bob"), line("PASS x"), line("NOOP")])
  strictEqual(framer.buffered, 0)
})

Deno.test("framer waits for a CRLF split across chunks", () => {
  const framer = new CommandFramer()
  framer.push(bytes("NOOP\r"))
  strictEqual(framer.next(), undefined)
  strictEqual(framer.buffered, 5)
  framer.push(bytes("\nQUIT"))
  assertEquals(drain(framer), [line("NOOP")])
  strictEqual(framer.buffered, 4)
})

Deno.test("framer keeps a CR that is not followed by LF, and a NUL", () => {
  const framer = new CommandFramer()
  framer.push(bytes("a\rb\0c\r\n"))
  assertEquals(drain(framer), [line("a\rb\0c")])
})

Deno.test("framer turns IAC IAC into one 0xFF byte, decoded as UTF-8 with replacement", () => {
  const framer = new CommandFramer()
  framer.push(bytes("RETR a", [255, 255], "b\r\n"))
  assertEquals(drain(framer), [line("RETR a\uFFFDb")])
  framer.push(bytes("RETR \u00e9t\u00e9\r\n"))
  assertEquals(drain(framer), [line("RETR \u00e9t\u00e9")])
})

Deno.test("framer drops Telnet negotiation and commands, even split across chunks", () => {
  const framer = new CommandFramer()
  framer.push(bytes([255, 244, 255, 242], "ABOR", [255, 253, 10], "\r\n"))
  assertEquals(drain(framer), [line("ABOR")])
  for (const split of [1, 2]) {
    const seq = bytes("NO", [255, 251, 1], "OP\r\n")
    framer.push(seq.subarray(0, 2 + split))
    strictEqual(framer.next(), undefined)
    strictEqual(framer.buffered, 2 + split)
    framer.push(seq.subarray(2 + split))
    assertEquals(drain(framer), [line("NOOP")])
  }
  framer.push(bytes("a", [255]))
  strictEqual(framer.next(), undefined)
  framer.push(bytes([255], "b\n"))
  assertEquals(drain(framer), [line("a\uFFFDb")])
})

// What reaches the server of "IAC IP IAC DM <command>" when the kernel took the urgent byte out
// of the stream (no SO_OOBINLINE), for each position of the urgent byte, and when none was urgent.
const SYNCH_LEFTOVERS: ReadonlyArray<readonly [string, number[]]> = [
  ["none urgent", [255, 244, 255, 242]],
  ["first IAC urgent", [244, 255, 242]],
  ["IP urgent (IAC IAC is a 0xFF data byte)", [255, 255, 242]],
  ["second IAC urgent (BSD ftp, tnftp)", [255, 244, 242]],
  ["DM urgent (lftp)", [255, 244, 255]],
  ["a bare DM", [242]],
  ["a bare IP and DM", [244, 242]],
]

Deno.test("framer drops what is left of a Telnet Synch before ABOR, STAT and QUIT, wherever the urgent byte was", () => {
  for (const [variant, leftover] of SYNCH_LEFTOVERS) {
    for (const command of ["ABOR", "STAT", "QUIT"]) {
      const framer = new CommandFramer()
      framer.push(bytes(leftover, `${command}\r\n`))
      assertEquals(drain(framer), [line(command)], `${variant} ${command}`)
      strictEqual(framer.buffered, 0)
    }
  }
})

Deno.test("framer drops Synch leftovers split across chunks at any byte", () => {
  for (const [variant, leftover] of SYNCH_LEFTOVERS) {
    const sequence = bytes(leftover, "ABOR\r\n")
    for (let split = 1; split < sequence.length; split++) {
      const framer = new CommandFramer()
      framer.push(sequence.subarray(0, split))
      const early = drain(framer)
      framer.push(sequence.subarray(split))
      assertEquals([...early, ...drain(framer)], [line("ABOR")], `${variant}, split at ${split}`)
    }
    const framer = new CommandFramer()
    for (const byte of sequence) framer.push(Uint8Array.of(byte))
    assertEquals(drain(framer), [line("ABOR")], `${variant}, one byte per chunk`)
  }
})

Deno.test("framer keeps bytes 0xF0-0xFF inside a line: only a line's first bytes can be Synch leftovers", () => {
  const framer = new CommandFramer()
  // U+1F600 is F0 9F 98 80 in UTF-8: a path may hold it, even first.
  framer.push(bytes("RETR \u{1F600}.txt\r\nRETR a", [255, 255], "\r\nNOOP\r\n"))
  assertEquals(drain(framer), [line("RETR \u{1F600}.txt"), line("RETR a\uFFFD"), line("NOOP")])
  // A line of nothing but leftovers is an empty line, and a CR at the start is data, not a leftover.
  framer.push(bytes([255, 244, 242], "\r\n\r", [242], "X\r\n"))
  assertEquals(drain(framer), [line(""), line("\r\uFFFDX")])
})

Deno.test("framer accepts a line of exactly maxLength bytes and refuses one byte more", () => {
  const framer = new CommandFramer()
  framer.push(bytes("x".repeat(2048) + "\r\n"))
  assertEquals(drain(framer), [line("x".repeat(2048))])
  framer.push(bytes("y".repeat(2049) + "\r\n"))
  assertEquals(drain(framer), [tooLong])
})

Deno.test("framer reports an overlong line at once, drops it up to its LF, then frames normally", () => {
  const framer = new CommandFramer(8)
  framer.push(bytes("0123456789"))
  assertEquals(framer.next(), tooLong)
  strictEqual(framer.next(), undefined)
  strictEqual(framer.buffered, 0)
  framer.push(bytes("more garbage\r"))
  strictEqual(framer.next(), undefined)
  framer.push(bytes("\nNOOP\r\n"))
  assertEquals(drain(framer), [line("NOOP")])
})

Deno.test("framer counts a CR after maxLength bytes as overflow only when it is not a line end", () => {
  const framer = new CommandFramer(4)
  framer.push(bytes("abcd\r\nabcd\rX\nok\n"))
  assertEquals(drain(framer), [line("abcd"), tooLong, line("ok")])
})

Deno.test("framer refuses a maxLength that is not a positive integer", () => {
  throws(() => new CommandFramer(0), RangeError)
  throws(() => new CommandFramer(1.5), RangeError)
})

Deno.test("framer reports the bytes after a line that are still buffered (AUTH TLS must see none)", () => {
  const framer = new CommandFramer()
  framer.push(bytes("AUTH TLS\r\nUSER x\r\n"))
  assertEquals(framer.next(), line("AUTH TLS"))
  strictEqual(framer.buffered, 8)
  framer.push(new Uint8Array(0))
  assertEquals(drain(framer), [line("USER x")])
})

// --- command ---

Deno.test("parseCommand upper-cases the verb and keeps the argument's leading spaces", () => {
  assertEquals(parseCommand("retr  my file.txt \t"), { name: "RETR", arg: " my file.txt" })
  assertEquals(parseCommand("noop"), { name: "NOOP", arg: "" })
  assertEquals(parseCommand("Cwd "), { name: "CWD", arg: "" })
  assertEquals(parseCommand(""), { name: "", arg: "" })
  assertEquals(parseCommand("stor a b\r\n"), { name: "STOR", arg: "a b" })
  assertEquals(parseCommand("\u00dfite x"), { name: "\u00dfITE", arg: "x" })
})

Deno.test("commandAfterSynch reads an unknown verb ending with ABOR, STAT or QUIT as that command", () => {
  strictEqual(commandAfterSynch("\uFFFDABOR"), "ABOR")
  strictEqual(commandAfterSynch("\u0000\u0000STAT"), "STAT")
  strictEqual(commandAfterSynch("XQUIT"), "QUIT")
  strictEqual(commandAfterSynch("ABOR"), "ABOR")
  // Anything else stays as it came, to be refused as unknown.
  strictEqual(commandAfterSynch("\uFFFDNOOP"), "\uFFFDNOOP")
  strictEqual(commandAfterSynch("ABORX"), "ABORX")
  strictEqual(commandAfterSynch("BOR"), "BOR")
  strictEqual(commandAfterSynch(""), "")
})

// --- reply ---

Deno.test("formatReply writes single and multi-line replies per RFC 959 4.2", () => {
  strictEqual(formatReply(230, "Login successful."), "230 Login successful.\r\n")
  strictEqual(formatReply(211, ["first", "middle", "last"]), "211-first\r\n middle\r\n211 last\r\n")
  strictEqual(formatReply(211, "a\nb"), "211-a\r\n211 b\r\n")
  strictEqual(formatReply(200, ["only"]), "200 only\r\n")
})

Deno.test("formatReply cannot be made to inject a reply line", () => {
  strictEqual(formatReply(550, 'No "x\r\n230 ok".'), '550-No "x\r\n550 230 ok".\r\n')
  strictEqual(formatReply(550, "a\rb"), "550 ab\r\n")
  strictEqual(formatReply(211, ["a", "211 fake", "end"]), "211-a\r\n 211 fake\r\n211 end\r\n")
})

Deno.test("quotePath doubles quotes for 257 replies", () => {
  strictEqual(`257 "${quotePath('/a"b')}" created.`, '257 "/a""b" created.')
  strictEqual(quotePath('""'), '""""')
})

// --- address ---

Deno.test("parsePort accepts six bytes and refuses bad ones", () => {
  assertEquals(parsePort("127,0,0,1,195,80"), { host: "127.0.0.1", port: 50000 })
  assertEquals(parsePort(" 10, 0,0,010 , 0 ,21 "), { host: "10.0.0.10", port: 21 })
  strictEqual(parsePort("127,0,0,1,195"), undefined)
  strictEqual(parsePort("127,0,0,1,195,80,1"), undefined)
  strictEqual(parsePort("256,0,0,1,195,80"), undefined)
  strictEqual(parsePort("127,0,0,1,0,0"), undefined)
  strictEqual(parsePort("127,0,0,1,-1,80"), undefined)
  strictEqual(parsePort("a,b,c,d,e,f"), undefined)
  strictEqual(parsePort(""), undefined)
})

Deno.test("parseEprt accepts IPv4 and IPv6 and tells syntax from family errors", () => {
  assertEquals(parseEprt("|1|132.235.1.2|6275|"), { family: 1, host: "132.235.1.2", port: 6275 })
  assertEquals(parseEprt("!2!1080::8:800:200C:417A!5282!"), { family: 2, host: "1080::8:800:200C:417A", port: 5282 })
  assertEquals(parseEprt("|2|::ffff:1.2.3.4|21|"), { family: 2, host: "::ffff:1.2.3.4", port: 21 })
  strictEqual(parseEprt("|3|1.2.3.4|21|"), "family")
  strictEqual(parseEprt("|1|1.2.3.256|21|"), "syntax")
  strictEqual(parseEprt("|1|1.2.3.4|0|"), "syntax")
  strictEqual(parseEprt("|1|1.2.3.4|65536|"), "syntax")
  strictEqual(parseEprt("|1|::1|21|"), "syntax")
  strictEqual(parseEprt("|2|1.2.3.4|21|"), "syntax")
  strictEqual(parseEprt("|2|fe80::1%eth0|21|"), "syntax")
  strictEqual(parseEprt("|1|1.2.3.4|21"), "syntax")
  strictEqual(parseEprt("|x|1.2.3.4|21|"), "syntax")
  strictEqual(parseEprt(""), "syntax")
})

Deno.test("formatPasv and formatEpsv write the 227 and 229 address texts", () => {
  strictEqual(formatPasv("127.0.0.1", 50000), "127,0,0,1,195,80")
  strictEqual(formatPasv("10.1.2.3", 21), "10,1,2,3,0,21")
  strictEqual(formatEpsv(50000), "(|||50000|)")
})

Deno.test("plainAddress unwraps brackets and IPv4-mapped addresses; isIPv4 checks dotted quads", () => {
  strictEqual(plainAddress("::ffff:1.2.3.4"), "1.2.3.4")
  strictEqual(plainAddress("[::FFFF:10.0.0.1]"), "10.0.0.1")
  strictEqual(plainAddress("[::1]"), "::1")
  strictEqual(plainAddress("192.168.0.1"), "192.168.0.1")
  strictEqual(isIPv4("192.168.0.1"), true)
  strictEqual(isIPv4("256.0.0.1"), false)
  strictEqual(isIPv4("1.2.3"), false)
  strictEqual(isIPv4("::1"), false)
})

// --- path ---

Deno.test("resolveVirtual joins, normalizes and never goes above the root", () => {
  strictEqual(resolveVirtual("/pub", "a.txt"), "/pub/a.txt")
  strictEqual(resolveVirtual("/pub", "/docs/./a.txt"), "/docs/a.txt")
  strictEqual(resolveVirtual("/pub", "../../../etc//passwd/"), "/etc/passwd")
  strictEqual(resolveVirtual("/", ".."), "/")
  strictEqual(resolveVirtual("/pub/x", ""), "/pub/x")
  strictEqual(resolveVirtual("/pub", "//"), "/")
  strictEqual(resolveVirtual("/pub", " a"), "/pub/ a")
})

Deno.test("basename and dirname of virtual paths", () => {
  strictEqual(basename("/docs/a.txt"), "a.txt")
  strictEqual(basename("/docs/"), "docs")
  strictEqual(basename("/"), "")
  strictEqual(dirname("/docs/a.txt"), "/docs")
  strictEqual(dirname("/a"), "/")
  strictEqual(dirname("/"), "/")
})

// --- listing ---

const file = (over: Partial<FileInfo> = {}): FileInfo => ({
  name: "a.txt",
  kind: "file",
  size: 12,
  mtime: new Date(Date.UTC(2025, 10, 21, 14, 16, 36)),
  mode: 0o644,
  nlink: 1,
  uid: 1000,
  gid: 100,
  dev: 0x803,
  ino: 0x1a2b,
  ...over,
})
const NOW = Date.UTC(2025, 11, 1)

Deno.test("formatListLine shows recent files with a time and old ones with a year", () => {
  strictEqual(formatListLine(file(), NOW, false), "-rw-r--r--   1 1000     100            12 Nov 21 14:16 a.txt\r\n")
  const old = file({ mtime: new Date(Date.UTC(2024, 2, 1, 9, 5)) })
  strictEqual(formatListLine(old, NOW, false), "-rw-r--r--   1 1000     100            12 Mar  1  2024 a.txt\r\n")
  const future = file({ mtime: new Date(Date.UTC(2026, 11, 1)) })
  strictEqual(formatListLine(future, NOW, false).slice(42, 54), "Dec  1  2026")
})

Deno.test("formatListLine shows directories, symlinks, special bits and unknown fields", () => {
  const dir = file({ name: "pub", kind: "directory", size: 4096, mode: null, nlink: 3, uid: null, gid: null })
  strictEqual(formatListLine(dir, NOW, false), "drwxr-xr-x   3 owner    group        4096 Nov 21 14:16 pub\r\n")
  strictEqual(formatListLine(file({ kind: "symlink", mode: null }), NOW, false).slice(0, 10), "lrwxrwxrwx")
  strictEqual(formatListLine(file({ mode: 0o4755 }), NOW, false).slice(0, 10), "-rwsr-xr-x")
  strictEqual(formatListLine(file({ mode: 0o6644 }), NOW, false).slice(0, 10), "-rwSr-Sr--")
  strictEqual(formatListLine(file({ kind: "directory", mode: 0o1777 }), NOW, false).slice(0, 10), "drwxrwxrwt")
  strictEqual(formatListLine(file({ kind: "directory", mode: 0o1776 }), NOW, false).slice(0, 10), "drwxrwxrwT")
  strictEqual(formatListLine(file({ mtime: null }), NOW, false).slice(42, 54), "Jan  1  1970")
})

Deno.test("formatListLine uses local time when asked", () => {
  const date = new Date(2025, 10, 21, 9, 7)
  const text = formatListLine(file({ mtime: date }), date.getTime(), true)
  strictEqual(text.slice(42, 54), "Nov 21 09:07")
})

Deno.test("formatNlstLine writes the bare name", () => {
  strictEqual(formatNlstLine("a.txt"), "a.txt\r\n")
})

Deno.test("mlsxTime and parseMlsxTime round-trip UTC times and refuse bad ones", () => {
  strictEqual(mlsxTime(new Date(Date.UTC(2026, 10, 21, 14, 16, 36))), "20261121141636")
  strictEqual(mlsxTime(new Date("0050-01-02T03:04:05Z")), "00500102030405")
  strictEqual(parseMlsxTime("20261121141636")?.toISOString(), "2026-11-21T14:16:36.000Z")
  strictEqual(parseMlsxTime("20261121141636.5")?.toISOString(), "2026-11-21T14:16:36.500Z")
  strictEqual(parseMlsxTime("00500101000000")?.getUTCFullYear(), 50)
  strictEqual(parseMlsxTime("20240229000000")?.toISOString(), "2024-02-29T00:00:00.000Z")
  for (const bad of ["20250229000000", "20261321000000", "20261100000000", "20261121240000", "20261121146000"]) {
    strictEqual(parseMlsxTime(bad), undefined, bad)
  }
  strictEqual(parseMlsxTime("2026112114163"), undefined)
  strictEqual(parseMlsxTime("20261121141636."), undefined)
  strictEqual(parseMlsxTime(" 20261121141636"), undefined)
})

Deno.test("FEAT advertises every MLSx fact and stars the enabled ones", () => {
  strictEqual(
    featMlstLine(new Set(DEFAULT_MLSX_FACTS)),
    "MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;",
  )
  strictEqual(featMlstLine(new Set(MLSX_FACTS)).split("*").length, MLSX_FACTS.length + 1)
  strictEqual(
    featMlstLine(new Set()),
    "MLST type;perm;size;modify;unique;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;",
  )
})

Deno.test("parseOptsMlst keeps the known facts named, in any case", () => {
  assertEquals([...parseOptsMlst("type;size;")], ["type", "size"])
  assertEquals([...parseOptsMlst("MLST Size;TYPE;color;unix.mode")], ["type", "size", "unix.mode"])
  assertEquals([...parseOptsMlst("")], [])
  assertEquals([...parseOptsMlst("MLST")], [])
})

Deno.test("mlsxPerm maps user permission letters to RFC 3659 perm letters", () => {
  const all = () => true
  strictEqual(mlsxPerm("file", all), "adfrw")
  strictEqual(mlsxPerm("directory", all), "cdeflmp")
  strictEqual(mlsxPerm("file", (l) => l === "r"), "r")
  strictEqual(mlsxPerm("directory", (l) => "elr".includes(l)), "el")
  strictEqual(mlsxPerm("directory", (l) => l === "w" || l === "d"), "cdp")
  strictEqual(mlsxPerm("symlink", (l) => l === "w"), "w")
})

Deno.test("formatMlsxLine writes the enabled, known facts in order", () => {
  const facts = new Set<string>(DEFAULT_MLSX_FACTS)
  strictEqual(
    formatMlsxLine(file(), facts, "adfrw", "a.txt"),
    "type=file;size=12;modify=20251121141636;perm=adfrw;unique=803g1a2b; a.txt",
  )
  const dir = file({ kind: "directory", mtime: null, dev: null })
  strictEqual(formatMlsxLine(dir, facts, "el", "."), "type=dir;perm=el; .")
  strictEqual(formatMlsxLine(dir, facts, "el", ".", "cdir"), "type=cdir;perm=el; .")
  strictEqual(formatMlsxLine(dir, facts, "el", "..", "pdir"), "type=pdir;perm=el; ..")
  strictEqual(formatMlsxLine(file({ kind: "symlink" }), new Set(["type"]), "", "l"), "type=OS.unix=symlink; l")
  strictEqual(formatMlsxLine(file({ kind: "other" }), new Set(["type"]), "", "p"), "type=file; p")
  const unix = new Set(["unix.mode", "unix.uid", "unix.gid"])
  strictEqual(formatMlsxLine(file({ mode: 0o4755 }), unix, "", "a"), "unix.mode=04755;unix.uid=1000;unix.gid=100; a")
  strictEqual(formatMlsxLine(file({ mode: 0o7 }), unix, "", "a"), "unix.mode=0007;unix.uid=1000;unix.gid=100; a")
  strictEqual(formatMlsxLine(file(), new Set(), "", "a"), " a")
})

// --- ascii ---

const toNet = (chunks: string[]): string[] => {
  const ascii = new ToNetworkAscii()
  return chunks.map((c) => dec.decode(ascii.convert(enc.encode(c))))
}
const fromNet = (chunks: string[]): string[] => {
  const ascii = new FromNetworkAscii()
  return [...chunks.map((c) => dec.decode(ascii.convert(enc.encode(c)))), dec.decode(ascii.flush())]
}

Deno.test("ToNetworkAscii turns bare LFs into CRLF, across chunk boundaries", () => {
  assertEquals(toNet(["a\nb\r\nc\n\n"]), ["a\r\nb\r\nc\r\n\r\n"])
  assertEquals(toNet(["a\r", "\nb", "\n"]), ["a\r", "\nb", "\r\n"])
  assertEquals(toNet(["a", "\n", "", "\n"]), ["a", "\r\n", "", "\r\n"])
})

Deno.test("ToNetworkAscii returns the chunk itself when nothing changes", () => {
  const ascii = new ToNetworkAscii()
  const plain = bytes("no line ends")
  strictEqual(ascii.convert(plain), plain)
  const crlf = bytes("a\r\nb\r\n")
  strictEqual(ascii.convert(crlf), crlf)
})

Deno.test("FromNetworkAscii turns CRLF into LF, holding a CR at a chunk end", () => {
  assertEquals(fromNet(["a\r\nb\r\n"]), ["a\nb\n", ""])
  assertEquals(fromNet(["a\r", "\nb"]), ["a", "\nb", ""])
  assertEquals(fromNet(["a\r", "b\r"]), ["a", "\rb", "\r"])
  assertEquals(fromNet(["a\r", "", "\r\n"]), ["a", "", "\r\n", ""])
  assertEquals(fromNet(["\r", "\r", "\n"]), ["", "\r", "\n", ""])
  assertEquals(fromNet(["a\rb\r\r\n"]), ["a\rb\r\n", ""])
})

Deno.test("FromNetworkAscii returns the chunk itself when nothing changes", () => {
  const ascii = new FromNetworkAscii()
  const plain = bytes("a\nb\n")
  strictEqual(ascii.convert(plain), plain)
  strictEqual(ascii.flush().length, 0)
})

Deno.test("a Synch whose Data Mark went out of band still leaves ABOR intact", () => {
  const framer = new CommandFramer()
  framer.push(new Uint8Array([255, 244, 255, ...new TextEncoder().encode("ABOR\r\n")]))
  const framed = framer.next()
  if (framed?.kind !== "line" || framed.text !== "ABOR") throw new Error(`got ${JSON.stringify(framed)}`)
})
