//! `conveyor init`, `completions` and `man`: what a new user and a packager
//! need before the first run. Starter pipelines are files under
//! `templates/`, built into the binary; each passes `conveyor check` as
//! printed (a test runs them).

use clap::CommandFactory;

use super::args::Cli;
use super::style::print_stdout;
use super::{Exit, style};

/// A starter pipeline: its name, what it does in a line, its text.
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub text: &'static str,
}

/// The starter pipelines, in the order `conveyor init` lists them.
pub const TEMPLATES: [Template; 5] = [
    Template {
        name: "thumbnails",
        about: "256 px JPEG thumbnails of every photo under a folder",
        text: include_str!("templates/thumbnails.toml"),
    },
    Template {
        name: "web-sizes",
        about: "each photo in three widths for the web (320, 800, 1600 px), sharpened",
        text: include_str!("templates/web-sizes.toml"),
    },
    Template {
        name: "gallery",
        about: "square thumbnails, large sharpened images and a CSV manifest",
        text: include_str!("templates/gallery.toml"),
    },
    Template {
        name: "archive",
        about: "files hashed and copied to YEAR/MONTH/ folders, with a manifest",
        text: include_str!("templates/archive.toml"),
    },
    Template {
        name: "webp",
        about: "every photo converted to WebP at its own size",
        text: include_str!("templates/webp.toml"),
    },
];

/// `conveyor init [TEMPLATE]`: the template on stdout, or the list.
pub(super) fn init(name: Option<&str>) -> Exit {
    let Some(name) = name else {
        let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let mut text = String::from("starter pipelines (conveyor init NAME > NAME.toml):\n");
        for t in &TEMPLATES {
            text.push_str(&format!("  {:<width$}  {}\n", t.name, t.about));
        }
        print_stdout(&text);
        return Exit::Ok;
    };
    match TEMPLATES.iter().find(|t| t.name == name) {
        Some(t) => {
            print_stdout(t.text);
            Exit::Ok
        }
        None => {
            let hint = crate::suggest::suggest(name, TEMPLATES.iter().map(|t| t.name))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            eprintln!(
                "{}",
                style::error_line(
                    style::stderr_style(),
                    &format!("no template `{name}`{hint}; `conveyor init` lists them")
                )
            );
            Exit::Invalid
        }
    }
}

/// `conveyor completions SHELL`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> Exit {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "conveyor", &mut script);
    print_stdout(&String::from_utf8_lossy(&script));
    Exit::Ok
}

/// `conveyor man`: one man page (roff) on stdout with every command in
/// it: the main page, then a section per command with its synopsis and
/// options (rather than pages `conveyor-run(1)` ... that nothing installs).
pub(super) fn man() -> Exit {
    match man_page() {
        Ok(page) => {
            print_stdout(&page);
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: cannot write the man page: {e}");
            Exit::Invalid
        }
    }
}

fn man_page() -> std::io::Result<String> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let mut text = String::from_utf8_lossy(&page).into_owned();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        // `conveyor\-run(1)` in the list of commands: a section below.
        text = text.replace(
            &format!("conveyor\\-{}(1)", name.replace('-', "\\-")),
            &format!("conveyor {}", name.replace('-', "\\-")),
        );
        let man = clap_mangen::Man::new(
            sub.clone()
                .bin_name(format!("conveyor {name}"))
                .display_name(format!("conveyor {name}")),
        );
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        part.extend_from_slice(b".PP\n");
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        let part = String::from_utf8_lossy(&part)
            .replace(
                ".SH SYNOPSIS",
                &format!(".SH \"CONVEYOR {}\"", name.to_uppercase()),
            )
            .replace(".SH DESCRIPTION\n", "")
            .replace(".SH OPTIONS", ".SS Options");
        text.push_str(&part);
    }
    Ok(text)
}
