import Foundation
import JSON
import TestSupport
import Testing

/// Outputs never overlap inputs, never replace what dsconv did not write, are written by one
/// process at a time, and replace an old output atomically (issue #9, part 1).
@Suite struct OutputSafetyCLITests {
    static let tiny = CLI.fixtures + "/tiny-dsv2.5"
    let fm = FileManager.default

    /// A small model and a checksum of every file in it, to prove it untouched.
    func snapshot(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try fm.subpathsOfDirectory(atPath: dir) {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
            }
        }
        return out
    }

    func synth(_ out: String, seed: Int = 0, force: Bool = false, extra: [String] = [], cwd: String? = nil) throws -> CLI.Result {
        try CLI.run(["synth", "--like", "deepseek-v2.5", "--layers", "1", "--hidden", "64", "--experts", "4", "--vocab", "256",
                     "--seed", "\(seed)", "--out", out] + (force ? ["--force"] : []) + extra, cwd: cwd)
    }

    @Test func workingDirectoryParentRootAndHomeAreRefused() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let work = dir + "/work"
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        fm.createFile(atPath: work + "/keep.txt", contents: Data("precious".utf8))
        for out in [".", "..", "./", work, "/", NSHomeDirectory()] {
            let r = try synth(out, force: true, cwd: work)
            #expect(r.code == 2, "--out \(out): \(r.stderr)")
            #expect(r.stderr.contains("refusing to write the output"), "--out \(out): \(r.stderr)")
        }
        #expect(fm.fileExists(atPath: work + "/keep.txt"))
        #expect(try fm.contentsOfDirectory(atPath: dir) == ["work"])
    }

    @Test func outputThatOverlapsAnInputIsRefusedWithForce() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let before = try snapshot(model)
        // Equal to the source, through a symlink too.
        try fm.createSymbolicLink(atPath: dir + "/alias", withDestinationPath: model)
        let cases: [[String]] = [
            ["synth", "--like", "deepseek-v2.5", "--layers", "1", "--hidden", "64", "--experts", "4", "--vocab", "256",
             "--tokenizer", model, "--out", model, "--force"],
            ["reshard", model, "--tp", "2", "--out", model, "--force"],
            ["reshard", model, "--tp", "2", "--out", dir + "/alias/", "--force"],
            ["reshard", model, "--tp", "2", "--out", dir, "--force"],                  // an ancestor of the source
            ["reshard", model, "--tp", "2", "--out", model + "/sub", "--force"],       // inside the source
            ["pack", model, "--out", model + "/../model", "--force"],
        ]
        for args in cases {
            let r = try CLI.run(args)
            #expect(r.code == 2, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("refusing to write the output") && r.stderr.contains("input"), "\(args): \(r.stderr)")
        }
        #expect(try snapshot(model) == before)

        // merge R --out R/rank-00 --force: the output inside the reshard output it reads.
        let r = try CLI.run(["reshard", model, "--tp", "2", "--out", dir + "/r"])
        #expect(r.code == 0, "\(r.stderr)")
        let reshard = try snapshot(dir + "/r")
        let m = try CLI.run(["merge", dir + "/r", "--out", dir + "/r/rank-00", "--force"])
        #expect(m.code == 2 && m.stderr.contains("inside the input"), "\(m.stderr)")
        #expect(try snapshot(dir + "/r") == reshard)
    }

    @Test func aSourceNamedLikeThePartialIsNeverDeleted() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let made = try synth(dir + "/x.partial")
        #expect(made.code == 0, "\(made.stderr)")
        let before = try snapshot(dir + "/x.partial")
        let r = try CLI.run(["pack", dir + "/x.partial", "--out", dir + "/x"])
        #expect(r.code == 2 && r.stderr.contains(".partial"), "\(r.stderr)")
        #expect(try snapshot(dir + "/x.partial") == before)
        // A stale partial dsconv did not write is refused, not removed.
        try fm.createDirectory(atPath: dir + "/y.partial", withIntermediateDirectories: true)
        fm.createFile(atPath: dir + "/y.partial/notes.txt", contents: Data("mine".utf8))
        let y = try synth(dir + "/y")
        #expect(y.code == 2 && y.stderr.contains("not written by dsconv"), "\(y.stderr)")
        #expect(fm.fileExists(atPath: dir + "/y.partial/notes.txt") && !fm.fileExists(atPath: dir + "/y"))
        // A stale partial dsconv did write (a killed run) is cleared and the run succeeds.
        try fm.createDirectory(atPath: dir + "/z.partial", withIntermediateDirectories: true)
        fm.createFile(atPath: dir + "/z.partial/.dsconv-output", contents: Data("{}".utf8))
        fm.createFile(atPath: dir + "/z.partial/model-00001-of-00002.safetensors", contents: Data(count: 10))
        let z = try synth(dir + "/z")
        #expect(z.code == 0, "\(z.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/z.partial") && fm.fileExists(atPath: dir + "/z/config.json"))
        #expect(!fm.fileExists(atPath: dir + "/z.lock"))
    }

    @Test func forceReplacesOnlyWhatDsconvWrote() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        try fm.createDirectory(atPath: dir + "/photos", withIntermediateDirectories: true)
        fm.createFile(atPath: dir + "/photos/a.jpg", contents: Data("jpeg".utf8))
        let r = try synth(dir + "/photos", force: true)
        #expect(r.code == 2 && r.stderr.contains("not written by dsconv") && r.stderr.contains("photos"), "\(r.stderr)")
        #expect(try fm.contentsOfDirectory(atPath: dir + "/photos") == ["a.jpg"])
        fm.createFile(atPath: dir + "/file", contents: Data("text".utf8))
        let f = try synth(dir + "/file", force: true)
        #expect(f.code == 2 && f.stderr.contains("not written by dsconv"), "\(f.stderr)")

        #expect(try synth(dir + "/m", seed: 1).code == 0)
        let first = try snapshot(dir + "/m")
        #expect(try synth(dir + "/m", seed: 2).code == 2)
        #expect(try snapshot(dir + "/m") == first)
        let again = try synth(dir + "/m", seed: 2, force: true)
        #expect(again.code == 0, "\(again.stderr)")
        #expect(try snapshot(dir + "/m") != first)
        #expect(try fm.contentsOfDirectory(atPath: dir).sorted() == ["file", "m", "photos"])
    }

    @Test func secondWriterIsRefusedWhileTheLockIsHeld() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let flock = ["/usr/bin/flock", "/bin/flock"].first { fm.isExecutableFile(atPath: $0) }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try #require(flock, "util-linux flock is needed to hold the lock"))
        fm.createFile(atPath: dir + "/m.lock", contents: nil)
        holder.arguments = [dir + "/m.lock", "sleep", "4"]
        try holder.run()
        defer { holder.terminate(); holder.waitUntilExit() }
        var r = try synth(dir + "/m")
        for _ in 0..<50 where r.code == 0 {  // until the holder has its lock
            try? fm.removeItem(atPath: dir + "/m")
            usleep(100_000)
            r = try synth(dir + "/m")
        }
        #expect(r.code == 2 && r.stderr.contains("another dsconv process"), "\(r.stderr)")
        #expect(!fm.fileExists(atPath: dir + "/m") && !fm.fileExists(atPath: dir + "/m.partial"))
    }

    /// Starts dsconv with `args` and SIGKILLs it after `delay` µs.
    func runKilled(_ args: [String], after delay: Int) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        usleep(useconds_t(delay))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// SIGKILL at many moments of a --force replacement: OUT always holds the old or the new
    /// output, complete, and verify accepts it.
    @Test func killDuringForcedReplacementLeavesOldOrNew() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let out = dir + "/m"
        let tok = ["--tokenizer", Self.tiny]
        #expect(try synth(out, seed: 1, extra: tok).code == 0)
        let old = try snapshot(out)
        #expect(try synth(dir + "/new", seed: 2, extra: tok).code == 0)
        var new = try snapshot(dir + "/new")
        new[".dsconv-output"] = old[".dsconv-output"]
        var sawOld = false, sawNew = false
        for delay in stride(from: 0, through: 400_000, by: 25_000) {
            try runKilled(["synth", "--like", "deepseek-v2.5", "--layers", "1", "--hidden", "64", "--experts", "4", "--vocab", "256",
                           "--seed", "2", "--tokenizer", Self.tiny, "--out", out, "--force"], after: delay)
            let now = try snapshot(out)
            let isOld = now == old, isNew = now == new
            #expect(isOld || isNew, "after a kill at \(delay) µs the output is neither the old nor the new one: \(now.keys.sorted())")
            sawOld = sawOld || isOld
            sawNew = sawNew || isNew
            let v = try CLI.run(["verify", out, "--json"])
            #expect(v.code == 0, "verify after a kill at \(delay) µs: \(v.stderr)")
            if isNew { try fm.removeItem(atPath: out); try fm.copyItem(atPath: dir + "/new", toPath: out) }
        }
        #expect(sawOld, "no kill landed before the replacement")
        let last = try synth(out, seed: 2, force: true, extra: tok)
        #expect(last.code == 0, "a later run recovers from whatever the kills left: \(last.stderr)")
        #expect(try snapshot(out) == new)
    }

    /// Every other writing command under SIGKILL at several moments of a --force replacement of
    /// an output it wrote before from another source: OUT is always exactly the old or the new
    /// complete output, and verify accepts it.
    @Test func killDuringEveryWritingCommandLeavesOldOrNew() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let tok = ["--tokenizer", Self.tiny]
        #expect(try synth(dir + "/a", seed: 1, extra: tok).code == 0)
        #expect(try synth(dir + "/b", seed: 2, extra: tok).code == 0)
        for s in ["a", "b"] {
            #expect(try CLI.run(["reshard", dir + "/" + s, "--tp", "2", "--out", dir + "/r" + s]).code == 0)
            #expect(try CLI.run(["pack", dir + "/" + s, "--out", dir + "/p" + s]).code == 0)
        }
        let commands: [(String, (String) -> [String])] = [
            ("reshard", { ["reshard", dir + "/" + $0, "--tp", "2"] }),
            ("pack", { ["pack", dir + "/" + $0] }),
            ("quantize", { ["quantize", dir + "/" + $0, "--bits", "4", "--group-size", "32"] }),
            ("merge", { ["merge", dir + "/r" + $0] }),
            ("unpack", { ["unpack", dir + "/p" + $0] }),
        ]
        func contents(_ path: String) throws -> [String: Data] {
            var s = try snapshot(path)
            s[".dsconv-output"] = nil
            return s
        }
        for (name, args) in commands {
            let out = dir + "/out-" + name, keep = dir + "/old-" + name, fresh = dir + "/new-" + name
            #expect(try CLI.run(args("a") + ["--out", keep]).code == 0)
            #expect(try CLI.run(args("b") + ["--out", fresh]).code == 0)
            let old = try contents(keep), new = try contents(fresh)
            #expect(old != new)
            try fm.copyItem(atPath: keep, toPath: out)
            for delay in [0, 20_000, 60_000, 120_000, 250_000, 500_000] {
                try runKilled(args("b") + ["--out", out, "--force"], after: delay)
                let now = try contents(out)
                #expect(now == old || now == new, "\(name) killed at \(delay) µs: neither the old nor the new output (\(now.keys.sorted()))")
                let v = try CLI.run(["verify", out])
                #expect(v.code == 0, "\(name): verify after a kill at \(delay) µs: \(v.stderr)")
                if now == new {
                    try fm.removeItem(atPath: out)
                    try fm.copyItem(atPath: keep, toPath: out)
                }
            }
            let last = try CLI.run(args("b") + ["--out", out, "--force"])
            #expect(last.code == 0, "\(name): a later run recovers from whatever the kills left: \(last.stderr)")
            #expect(try contents(out) == new)
        }
    }

    @Test func logitsOutFollowsTheSameRules() throws {
        let dir = temporaryDirectory()
        defer { try? fm.removeItem(atPath: dir) }
        let model = try CLI.smallCheckpoint(in: dir)
        let before = try snapshot(model)
        let shard = try #require(try fm.contentsOfDirectory(atPath: model).first { $0.hasSuffix(".safetensors") })
        let base = ["verify", model, "--prompt-ids", "1,2,3", "--max-new-tokens", "1"]
        let intoModel = try CLI.run(base + ["--logits-out", model + "/" + shard, "--force"])
        #expect(intoModel.code == 2 && intoModel.stderr.contains("inside the input"), "\(intoModel.stderr)")
        #expect(try snapshot(model) == before)

        fm.createFile(atPath: dir + "/notes.txt", contents: Data("mine".utf8))
        let over = try CLI.run(base + ["--logits-out", dir + "/notes.txt"])
        #expect(over.code == 2 && over.stderr.contains("already exists"), "\(over.stderr)")
        let forced = try CLI.run(base + ["--logits-out", dir + "/notes.txt", "--force"])
        #expect(forced.code == 2 && forced.stderr.contains("not written by dsconv"), "\(forced.stderr)")
        #expect(try String(contentsOfFile: dir + "/notes.txt", encoding: .utf8) == "mine")

        let first = try CLI.run(base + ["--logits-out", dir + "/logits.safetensors"])
        #expect(first.code == 0, "\(first.stderr)")
        let second = try CLI.run(base + ["--logits-out", dir + "/logits.safetensors", "--force"])
        #expect(second.code == 0, "\(second.stderr)")
        #expect(try fm.contentsOfDirectory(atPath: dir).sorted() == ["logits.safetensors", "model", "notes.txt"])
    }
}
