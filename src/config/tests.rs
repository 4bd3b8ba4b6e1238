//! Every kind of config error, with its exact message and position.

use super::*;

const HEAD: &str = r#"[[stage]]
name = "scan"
kind = "scan"
root = "samples/photos"
"#;

/// (message, line, col, help) of every error, in source order.
fn errors_with(text: &str, overrides: &[Override]) -> Vec<(String, usize, usize, Option<String>)> {
    let registry = Registry::builtin();
    let diags = match load_str("p.toml", text, overrides, &registry) {
        Ok(_) => panic!("expected errors, the pipeline loaded"),
        Err(d) => d,
    };
    diags
        .errors()
        .map(|d| {
            let (line, col) = d.loc.as_ref().map_or((0, 0), |l| diags.sources.line_col(l));
            (d.message.clone(), line, col, d.help.clone())
        })
        .collect()
}

fn errors(text: &str) -> Vec<(String, usize, usize, Option<String>)> {
    errors_with(text, &[])
}

fn one(text: &str) -> (String, usize, usize, Option<String>) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

fn help(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn a_good_pipeline_loads() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = 3\n");
    let loaded = load_str("p.toml", &text, &[], &Registry::builtin()).expect("loads");
    let p = loaded.pipeline;
    assert_eq!(p.name, "p");
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.stages[1].inputs, vec![0]);
    assert_eq!(p.stages[1].workers, 3);
    assert_eq!(p.stages[1].mode, Mode::Threads);
}

#[test]
fn unknown_key_with_suggestion() {
    let text =
        format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nauto_orientt = true\n");
    assert_eq!(
        one(&text),
        (
            "unknown key `auto_orientt` in stage `load` (kind `decode`)".into(),
            9,
            1,
            help("did you mean `auto_orient`?")
        )
    );
}

#[test]
fn unknown_common_key_suggests_common_keys() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworker = 2\n");
    assert_eq!(
        one(&text),
        (
            "unknown key `worker` in stage `load` (kind `decode`)".into(),
            9,
            1,
            help("did you mean `workers`?")
        )
    );
}

#[test]
fn unknown_pipeline_key() {
    let text = format!("[pipeline]\non_eror = \"fail\"\n\n{HEAD}");
    assert_eq!(
        one(&text),
        (
            "unknown key `on_eror` in [pipeline]".into(),
            2,
            1,
            help("did you mean `on_error`?")
        )
    );
}

#[test]
fn unknown_kind() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"small\"\nkind = \"resise\"\nwidth = 10\n");
    assert_eq!(
        one(&text),
        (
            "unknown stage kind `resise` in stage `small`".into(),
            8,
            8,
            help("did you mean `resize`?")
        )
    );
}

#[test]
fn wrong_type() {
    let text =
        format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = \"four\"\n");
    assert_eq!(
        one(&text),
        (
            "stage `load`: `workers`: invalid value: string \"four\", expected a number of workers or \"auto\"".into(),
            9,
            11,
            None
        )
    );
}

#[test]
fn out_of_range_values() {
    let text = format!(
        "[pipeline]\nqueue = 0\n\n{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = 0\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\nquality = 0\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                "[pipeline]: `queue` must be from 1 to 10000, not 0".into(),
                2,
                9,
                None
            ),
            (
                "stage `load`: `workers` must be at least 1".into(),
                12,
                11,
                None
            ),
            (
                "stage `jpeg`: `quality` must be from 1 to 100, not 0".into(),
                17,
                11,
                None
            ),
        ]
    );
}

#[test]
fn enum_value_with_suggestion() {
    let text =
        format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"thread\"\n");
    assert_eq!(
        one(&text),
        (
            "stage `load`: `mode`: unknown variant `thread`, expected one of `inline`, `threads`, `processes`".into(),
            9,
            8,
            help("did you mean `threads`?")
        )
    );
}

#[test]
fn duplicate_stage_names() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"scan\"\nkind = \"read\"\n");
    assert_eq!(
        one(&text),
        (
            "duplicate stage name `scan` (first defined at line 2)".into(),
            7,
            8,
            None
        )
    );
}

#[test]
fn dangling_input() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\ninput = \"scn\"\n");
    assert_eq!(
        one(&text),
        (
            "stage `load` reads from `scn`, but no stage has that name".into(),
            9,
            9,
            help("did you mean `scan`?")
        )
    );
}

#[test]
fn dangling_name_in_inputs_list() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\ninputs = [\"scan\", \"other\"]\n"
    );
    assert_eq!(
        one(&text).0,
        "stage `load` reads from `other`, but no stage has that name"
    );
}

#[test]
fn cycle() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"a\"\nkind = \"resize\"\ninput = \"b\"\nwidth = 1\n\n[[stage]]\nname = \"b\"\nkind = \"resize\"\ninput = \"a\"\nwidth = 1\n"
    );
    assert_eq!(
        one(&text),
        (
            "the stages form a cycle: `b` -> `a` -> `b`".into(),
            9,
            9,
            None
        )
    );
}

#[test]
fn self_loop_is_a_cycle() {
    let text =
        format!("{HEAD}\n[[stage]]\nname = \"a\"\nkind = \"resize\"\ninput = \"a\"\nwidth = 1\n");
    assert_eq!(one(&text).0, "the stages form a cycle: `a` -> `a`");
}

#[test]
fn payload_type_mismatch() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n\n[[stage]]\nname = \"thumb\"\nkind = \"resize\"\nwidth = 9\n"
    );
    assert_eq!(
        one(&text),
        (
            "stage `thumb` (kind `resize`) takes image, but its input `save` (kind `write`) gives nothing".into(),
            21,
            8,
            help("put a `decode` stage in between")
        )
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = format!(
        "[pipeline]\nbogus = 1\n\n{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = 0\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\ninput = \"nope\"\nwidht = 3\n"
    );
    let all = errors(&text);
    let messages: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "unknown key `bogus` in [pipeline]",
            "stage `load`: `workers` must be at least 1",
            "stage `small`: `resize` needs `width`, `height` or both",
            "stage `small` reads from `nope`, but no stage has that name",
            "unknown key `widht` in stage `small` (kind `resize`)",
        ]
    );
}

#[test]
fn missing_name_and_kind_point_at_the_table() {
    let text = format!("{HEAD}\n[[stage]]\nwidth = 3\n");
    let all = errors(&text);
    assert_eq!(all[0], ("stage #2 has no `name`".into(), 6, 1, None));
    assert_eq!(all[1].0, "stage `#2` has no `kind`");
    assert_eq!((all[1].1, all[1].2), (6, 1));
}

#[test]
fn first_stage_must_be_a_source() {
    let text = "[[stage]]\nname = \"load\"\nkind = \"decode\"\n";
    assert_eq!(
        one(text),
        (
            "stage `load` is the first stage but kind `decode` needs an input".into(),
            3,
            8,
            help("start the pipeline with a source such as `scan`")
        )
    );
}

#[test]
fn toml_syntax_error_has_a_position() {
    let text = "[[stage]]\nname = \"scan\nkind = \"scan\"\n";
    let (msg, line, _, _) = one(text);
    assert!(msg.starts_with("invalid TOML"), "{msg}");
    assert_eq!(line, 2);
}

#[test]
fn duplicate_name_key_explains_filename() {
    let text =
        format!("{HEAD}\n[[stage]]\nname = \"save\"\nkind = \"write\"\nname = \"{{stem}}.jpg\"\n");
    let (msg, line, col, help_text) = one(&text);
    assert!(msg.contains("duplicate key"), "{msg}");
    assert_eq!((line, col), (9, 1));
    assert_eq!(
        help_text,
        help("`name` is the stage's name; `write` names its files with `filename`")
    );
}

#[test]
fn unset_environment_variable() {
    let text =
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"${CONVEYOR_TEST_SURELY_UNSET}\"\n";
    assert_eq!(
        one(text),
        (
            "environment variable `CONVEYOR_TEST_SURELY_UNSET` is not set".into(),
            4,
            8,
            help("set it, or give a default: `${CONVEYOR_TEST_SURELY_UNSET:-...}`")
        )
    );
}

#[test]
fn environment_defaults_are_used() {
    let text = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"${CONVEYOR_TEST_SURELY_UNSET:-samples}/photos\"\n";
    let p = load_str("p.toml", text, &[], &Registry::builtin())
        .expect("loads")
        .pipeline;
    assert_eq!(
        p.stages[0].options.get("root").and_then(|v| v.as_str()),
        Some("samples/photos")
    );
}

#[test]
fn overrides_are_applied_and_checked() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = 2\n");
    let registry = Registry::builtin();
    let p = load_str(
        "p.toml",
        &text,
        &[
            Override::Set("load.workers=5".into()),
            Override::Mode("load=inline".into()),
        ],
        &registry,
    )
    .map(|l| l.pipeline);
    // inline wins over workers: one thread.
    let p = p.expect("loads");
    assert_eq!(p.stages[1].mode, Mode::Inline);
    assert_eq!(p.stages[1].workers, 1);

    let all = errors_with(&text, &[Override::Set("load.workers=0".into())]);
    assert_eq!(
        all,
        vec![(
            "stage `load`: `workers` must be at least 1".into(),
            1,
            14,
            None
        )]
    );
    let all = errors_with(&text, &[Override::Set("lod.workers=1".into())]);
    assert_eq!(
        all,
        vec![(
            "`--set` names no stage `lod`".into(),
            1,
            1,
            help("did you mean `load`?")
        )]
    );
    let all = errors_with(&text, &[Override::Mode("load=threds".into())]);
    assert_eq!(all[0].3, help("did you mean `threads`?"));
}

#[test]
fn mode_for_every_stage_skips_sources() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n");
    let p = load_str(
        "p.toml",
        &text,
        &[Override::Mode("inline".into())],
        &Registry::builtin(),
    )
    .expect("loads")
    .pipeline;
    assert_eq!(p.stages[1].mode, Mode::Inline);
}

#[test]
fn inline_with_workers_warns() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"inline\"\nworkers = 4\n"
    );
    let loaded = load_str("p.toml", &text, &[], &Registry::builtin()).expect("loads");
    let inline: Vec<_> = loaded
        .warnings
        .items
        .iter()
        .filter(|w| w.message.contains("runs inline"))
        .collect();
    assert_eq!(inline.len(), 1);
    assert_eq!(
        inline[0].message,
        "stage `load` runs inline, on one thread: `workers = 4` is ignored"
    );
}

#[test]
fn rendering_shows_line_caret_and_help() {
    let text = format!("{HEAD}\n[[stage]]\nname = \"small\"\nkind = \"resise\"\n");
    let diags = load_str("p.toml", &text, &[], &Registry::builtin()).expect_err("fails");
    let out = diags.render(Style::PLAIN);
    assert!(
        out.contains("error: unknown stage kind `resise` in stage `small`"),
        "{out}"
    );
    assert!(out.contains("--> p.toml:8:8"), "{out}");
    assert!(out.contains("8 | kind = \"resise\""), "{out}");
    assert!(out.contains("  |        ^^^^^^^^ unknown kind"), "{out}");
    assert!(out.contains("= help: did you mean `resize`?"), "{out}");
}

#[test]
fn write_refuses_templates_that_leave_dir() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"r\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\nfilename = \"../{{stem}}.{{ext}}\"\n"
    );
    assert_eq!(
        one(&text).0,
        "stage `save`: `filename` must stay inside `dir` (no `..`, no absolute path)"
    );
}

#[test]
fn durations_and_sizes_are_refused_in_their_own_words() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"processes\"\ntimeout = \"10 parsecs\"\nmemory_limit = 5\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                "stage `load`: unknown time unit `parsecs` in `10 parsecs` (use ms, s, m, h or d, e.g. `30s`)".into(),
                10,
                11,
                None
            ),
            (
                "stage `load`: `memory_limit`: invalid type: integer `5`, expected a size written as text, e.g. \"256MiB\" or \"2GiB\"".into(),
                11,
                16,
                None
            ),
        ]
    );
}

#[test]
fn durations_and_sizes_reach_the_stage_parsed() {
    let text = format!(
        "{HEAD}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"processes\"\ntimeout = \"1.5s\"\nmemory_limit = \"256MiB\"\n"
    );
    let p = load_str("p.toml", &text, &[], &Registry::builtin())
        .expect("loads")
        .pipeline;
    assert_eq!(p.stages[1].timeout, Some(Duration::from_millis(1500)));
    assert_eq!(p.stages[1].memory_limit, Some(256 << 20));
    assert_eq!(
        (p.stages[0].timeout, p.stages[0].memory_limit),
        (None, None)
    );
}
