//! Resume keyed on meaning: what an option means for the outputs decides
//! whether an item is redone, not how the file happens to be written.

use super::*;

/// Four photos through the thumbnails pipeline, once.
fn made(ws: &Workspace) -> Vec<&'static str> {
    let names = vec!["a.jpg", "b.jpg", "c.jpg", "d.jpg"];
    for (n, sample) in names
        .iter()
        .zip(["tiny.jpg", "tower.jpg", "dusk.jpg", "meadow.jpg"])
    {
        ws.sample(sample, &format!("photos/{n}"));
    }
    run(ws, &[]).code(0);
    names
}

fn run(ws: &Workspace, extra: &[&str]) -> Done {
    let mut args = vec![
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=photos",
    ];
    args.extend_from_slice(extra);
    ws.conveyor().args(&args).run()
}

#[test]
fn writing_a_default_out_or_changing_the_scope_redoes_nothing() {
    let ws = Workspace::new();
    made(&ws);
    let before = ws.files("out/thumbs");
    for set in [
        "thumb.fit=\"contain\"",
        "thumb.upscale=false",
        "jpeg.quality=85",
        "scan.hidden=false",
        "scan.exclude=[\"Z*\"]",
        "scan.case_sensitive=false",
    ] {
        let done = run(&ws, &["--set", set]);
        done.code(0);
        assert_eq!(counts(&done), (0, 4), "--set {set}: {}", done.stderr());
    }
    // Narrowing the scope and widening it again: the items left out and
    // back in are still up to date.
    let narrow = run(&ws, &["--set", "scan.include=[\"a.jpg\"]"]);
    assert_eq!(counts(&narrow), (0, 1), "{}", narrow.stderr());
    let wide = run(&ws, &[]);
    assert_eq!(counts(&wide), (0, 4), "{}", wide.stderr());
    assert_eq!(ws.files("out/thumbs"), before, "outputs rewritten");
}

#[test]
fn an_option_that_changes_the_output_redoes_every_item() {
    let ws = Workspace::new();
    made(&ws);
    let done = run(&ws, &["--set", "thumb.fit=\"cover\""]);
    assert_eq!(counts(&done), (4, 0), "{}", done.stderr());
    let done = run(
        &ws,
        &["--set", "thumb.fit=\"cover\"", "--set", "jpeg.quality=84"],
    );
    assert_eq!(counts(&done), (4, 0), "{}", done.stderr());
}

#[test]
fn changing_the_shards_redoes_nothing_that_is_done() {
    let ws = Workspace::new();
    let names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"];
    for n in names {
        ws.sample("tiny.jpg", &format!("photos/{n}"));
    }
    for shard in ["0/2", "1/2"] {
        run(&ws, &["--shard", shard]).code(0);
    }
    assert_eq!(ws.files("out/thumbs").len(), 6);
    let all = run(&ws, &[]);
    assert_eq!(counts(&all), (0, 6), "{}", all.stderr());
    let third = run(&ws, &["--shard", "2/3"]);
    let t = third.tally();
    assert_eq!((t.ok, t.up_to_date), (0, t.scanned), "{}", third.stderr());
}
