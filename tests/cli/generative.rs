//! The generative safety test: random trees (nested folders, same-named
//! files, links to files and folders inside and outside the root, a name
//! that is not UTF-8) and random pipelines of writers (`write`, `copy`,
//! `copy` with `move`, `exec`, `manifest`, `contact_sheet`) whose folders,
//! paths and file names are drawn from a set that includes the root, its
//! sub-folders, symlinked folders and colliding templates. Whatever the
//! pipeline, in threads and in processes mode: every input still exists
//! with its bytes or (moved) byte-identical at a destination, nothing
//! outside the output folders changed, and no temp file remains. Some cases
//! also name files and folders on the command line (`run p.toml PATH...`),
//! inside and outside the root, output folders and links among them.
//!
//! `CONVEYOR_GEN_CASES` sets the number of cases (default 120 per mode),
//! `CONVEYOR_GEN_SEED` the first seed, to replay a failure.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::*;

/// A small, seeded generator (xorshift64*): the same seed, the same case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What a path holds, links not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every file and link below `root`, by path relative to it.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = e.path().strip_prefix(root).expect("prefix").to_path_buf();
        let ft = e.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).expect("readlink");
            out.insert(rel, Entry::Link(target));
        } else if ft.is_file() {
            out.insert(rel, Entry::File(std::fs::read(e.path()).expect("read")));
        }
    }
    out
}

/// A random tree under `in/` (the root) and `outside/`, and a few links in
/// `out/` that point back into the root. Every file's bytes are unique: a
/// tiny JPEG with its own tail (decoders stop at the end-of-image marker).
fn make_tree(ws: &Workspace, rng: &mut Rng) {
    let tiny = std::fs::read(Path::new(REPO).join("samples/photos/tiny.jpg")).expect("sample");
    let folders = ["", "a", "b", "a/deep", "b/deep", ".hidden"];
    let names = ["x.jpg", "y.jpg", "x.png", "same.jpg", "z.dat"];
    let mut n = 0;
    for folder in folders {
        for name in names {
            if rng.chance(45) {
                let mut bytes = tiny.clone();
                bytes.extend_from_slice(format!("unique {n}").as_bytes());
                n += 1;
                let rel = if folder.is_empty() {
                    format!("in/{name}")
                } else {
                    format!("in/{folder}/{name}")
                };
                ws.write(&rel, &bytes);
            }
        }
    }
    let mut odd = tiny.clone();
    odd.extend_from_slice(b"not utf-8");
    let dir = ws.path("in/b");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(OsStr::from_bytes(b"n\xff.jpg")), &odd).expect("odd name");
    let mut out_of_root = tiny.clone();
    out_of_root.extend_from_slice(b"outside");
    ws.write("outside/o.jpg", &out_of_root);
    let link = |target: &str, at: &str| {
        let at = ws.path(at);
        std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, at).expect("symlink");
    };
    if rng.chance(50) {
        link("../outside/o.jpg", "in/link-out.jpg");
    }
    if rng.chance(50) {
        link("../outside", "in/link-dir-out");
    }
    if rng.chance(50) {
        link("a", "in/link-dir-in");
    }
    if rng.chance(50) {
        link("b/../a/x.jpg", "in/link-in.jpg");
    }
    // Links in the output folder back into the root.
    link("../in", "out/root-link");
    link("../in/a", "out/a");
    if rng.chance(30) {
        // A hard link to an input where an output may land.
        if let Ok(()) = std::fs::hard_link(ws.path("in/a/x.jpg"), ws.path("out/x.jpg")) {}
    }
}

// Most choices pass the checks made before work, so that the guard placing
// each file is what is tried; the rest are refused up front.
const DIRS: [&str; 12] = [
    "out",
    "out",
    "out",
    "out/b",
    "in/new",
    ".",
    ".",
    "in",
    "in/a",
    "out/root-link",
    "out/a",
    "in/../in",
];
const FILENAMES: [&str; 10] = [
    "{rel_dir}/{name}",
    "{name}",
    "{stem}.jpg",
    "x.jpg",
    "{rel_dir}/{stem}.{ext}",
    "a/{name}",
    "root-link/{rel_dir}/{name}",
    "in/{rel_dir}/{name}",
    "in/{rel_dir}/{stem}.jpg",
    "outside/{name}",
];
const GATHER_PATHS: [&str; 6] = [
    "in/x.jpg",
    "out/list.csv",
    "out/root-link/x.jpg",
    "out/a/sheet.jpg",
    "out/sheet.jpg",
    "outside/o.jpg",
];

/// Paths a case may give on the command line instead of the scan's root.
const ARG_PATHS: [&str; 9] = [
    "in/a",
    "in/x.jpg",
    "in/a/deep",
    "outside",
    "outside/o.jpg",
    "out",
    "out/root-link",
    "out/root-link/x.jpg",
    "in/.hidden",
];

/// A random pipeline: a scan, then one to three writers, each reading the
/// scan or a decoded branch. Returns its text and the folders it writes.
fn make_pipeline(rng: &mut Rng, mode: &str) -> (String, Vec<String>) {
    let include = rng.pick(&["", "include = [\"**/*.jpg\"]\n"]);
    let follow = if rng.chance(30) {
        "follow_links = true\n"
    } else {
        ""
    };
    let mut text = format!(
        "[pipeline]\nretries = 0\n\n[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n{include}{follow}\n[[stage]]\nname = \"read\"\nkind = \"read\"\nmode = \"{mode}\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\ninput = \"scan\"\nmode = \"{mode}\"\n"
    );
    let mut dirs = Vec::new();
    let writers = 1 + rng.below(3);
    for w in 0..writers {
        let dir = *rng.pick(&DIRS);
        let filename = *rng.pick(&FILENAMES);
        let stage = match rng.below(6) {
            0 => format!(
                "kind = \"write\"\ninput = \"read\"\ndir = \"{dir}\"\nfilename = \"{filename}\"\noverwrite = {}\n",
                rng.chance(50)
            ),
            1 => format!(
                "kind = \"copy\"\ninput = \"scan\"\ndir = \"{dir}\"\nfilename = \"{filename}\"\noverwrite = {}\n",
                rng.chance(50)
            ),
            2 => format!(
                "kind = \"copy\"\ninput = \"scan\"\ndir = \"{dir}\"\nfilename = \"{filename}\"\nmove = true\n"
            ),
            3 => format!(
                "kind = \"exec\"\ninput = \"scan\"\ndir = \"{dir}\"\nfilename = \"{filename}\"\ncommand = [\"cp\", \"{{path}}\", \"{{out}}\"]\n"
            ),
            4 => {
                let path = *rng.pick(&GATHER_PATHS);
                dirs.push(
                    Path::new(path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                format!("kind = \"manifest\"\ninput = \"scan\"\npath = \"{path}\"\n")
            }
            _ => {
                let path = *rng.pick(&GATHER_PATHS);
                dirs.push(
                    Path::new(path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                format!(
                    "kind = \"contact_sheet\"\ninput = \"load\"\npath = \"{path}\"\ntile = 16\n"
                )
            }
        };
        if stage.contains("dir = ") {
            dirs.push(dir.to_string());
        }
        let stage_mode = if stage.contains("manifest") || stage.contains("contact_sheet") {
            String::new()
        } else {
            format!("mode = \"{mode}\"\nworkers = 3\n")
        };
        text.push_str(&format!(
            "\n[[stage]]\nname = \"w{w}\"\n{stage}{stage_mode}"
        ));
    }
    (text, dirs)
}

/// Whether `path` (relative to the workspace) lies in one of the output
/// folders, resolved as the file system sees them.
fn in_output(ws: &Workspace, path: &Path, dirs: &[String]) -> bool {
    // The folder is resolved, not the file: a link in an output folder is
    // in it wherever it points.
    let full = ws.path("").join(path);
    let real = match (full.parent(), full.file_name()) {
        (Some(dir), Some(name)) => conveyor::inputs::resolve(dir).join(name),
        _ => conveyor::inputs::resolve(&full),
    };
    dirs.iter().any(|d| {
        let d = conveyor::inputs::resolve(&ws.path(d));
        real.starts_with(&d)
    })
}

/// `path` with `.` and `..` taken away by its text alone.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn check_case(seed: u64, mode: &str) -> Option<i32> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let ws = Workspace::new();
    make_tree(&ws, &mut rng);
    let (text, dirs) = make_pipeline(&mut rng, mode);
    let mut args = vec!["run", "p.toml", "-q"];
    if rng.chance(40) {
        for _ in 0..1 + rng.below(2) {
            args.push(*rng.pick(&ARG_PATHS));
        }
    }
    ws.write("p.toml", text.as_bytes());
    let before = snapshot(&ws.path(""));
    let real = |p: &Path| conveyor::inputs::resolve(&ws.path("").join(p));
    // Every file below the root, links followed: a superset of the
    // inputs. With paths given, the run reads only what they name (links
    // followed), and the root's own files stay protected as originals; a
    // file outside reached only through a link in a part of the root the
    // run does not walk is not read by it.
    let given = &args[3..];
    let inputs: Vec<PathBuf> = before
        .iter()
        .filter_map(|(p, entry)| {
            let in_root = p.starts_with("in");
            if given.is_empty() || given.iter().any(|a| p.starts_with(a)) {
                (in_root || !given.is_empty()).then(|| real(p))
            } else if in_root {
                Some(match entry {
                    Entry::File(_) => real(p),
                    Entry::Link(_) => ws.path("").join(p),
                })
            } else {
                None
            }
        })
        .collect();
    let done = ws.conveyor().args(&args).run();
    let code = done.out.status.code();
    let context = || {
        format!(
            "seed {seed}, {mode}, {}\n{text}\n--- stderr\n{}",
            args.join(" "),
            done.stderr()
        )
    };
    assert!(
        matches!(code, Some(0..=2)),
        "exit {code:?} (a crash?)\n{}",
        context()
    );
    assert!(!done.stderr().contains("panicked"), "{}", context());
    let after = snapshot(&ws.path(""));
    let moves = text.contains("move = true");
    // Bytes of every file now in an output folder.
    let outputs: Vec<&Entry> = after
        .iter()
        .filter(|(p, _)| in_output(&ws, p, &dirs))
        .map(|(_, e)| e)
        .collect();
    for (path, entry) in &before {
        if path.starts_with("p.toml")
            || path.starts_with("samples")
            || path.starts_with("pipelines")
        {
            continue;
        }
        // Whether the bytes of a moved input are at a destination.
        let moved = || match entry {
            // A moved link leaves as the bytes it pointed to, as they were
            // before the run (its target may have been moved too).
            Entry::Link(target) => {
                let pointed = lexical(&path.parent().expect("parent").join(target));
                match before.get(&pointed) {
                    Some(file @ Entry::File(_)) => outputs.contains(&file),
                    _ => false,
                }
            }
            file => outputs.contains(&file),
        };
        match after.get(path) {
            Some(now) if now == entry => {}
            // A file in an output folder that the run does not read (an
            // earlier output, or a file the pipeline names on purpose) may
            // be replaced; an input never.
            Some(_) if in_output(&ws, path, &dirs) && !inputs.contains(&real(path)) => {}
            // An input moved away whole, whose path a gathering stage then
            // names for its own file (through a followed link, the path
            // the user wrote).
            Some(_) if moves && in_output(&ws, path, &dirs) && moved() => {}
            Some(_) => panic!("{} changed\n{}", path.display(), context()),
            None => {
                assert!(
                    moves && moved(),
                    "{} is gone{}\n{}",
                    path.display(),
                    if moves {
                        " and is in no output folder"
                    } else {
                        ""
                    },
                    context()
                );
            }
        }
    }
    // Nothing new outside the output folders.
    for path in after.keys() {
        if !before.contains_key(path) {
            assert!(
                in_output(&ws, path, &dirs),
                "{} appeared outside the output folders\n{}",
                path.display(),
                context()
            );
        }
        assert!(
            !path
                .file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b".conveyor-tmp-")),
            "temp file left: {}\n{}",
            path.display(),
            context()
        );
    }
    code
}

#[test]
fn no_pipeline_of_writers_harms_an_input() {
    let cases: u64 = std::env::var("CONVEYOR_GEN_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let first: u64 = std::env::var("CONVEYOR_GEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // How the runs ended: the cases must reach every outcome, or the test
    // only checks the checker.
    let mut ends: BTreeMap<Option<i32>, usize> = BTreeMap::new();
    for seed in first..first + cases {
        for mode in ["threads", "processes"] {
            *ends.entry(check_case(seed, mode)).or_default() += 1;
        }
    }
    eprintln!("exit codes of {} runs: {ends:?}", 2 * cases);
    if cases >= 50 {
        for code in [0, 1, 2] {
            assert!(
                ends.contains_key(&Some(code)),
                "no run ended with {code}: {ends:?}"
            );
        }
    }
}
