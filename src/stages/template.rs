//! File name templates shared by the stages that name files (`write`,
//! `copy`, `exec`): placeholders from the item, rendered so that the result
//! always stays inside the output folder.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::item::Item;
use crate::stage::{OptionError, StageError};

/// Every placeholder a template may use.
pub const PLACEHOLDERS: [&str; 9] = [
    "rel_dir", "stem", "name", "ext", "hash", "date", "year", "month", "day",
];

/// Check a template written under option `key`.
pub fn validate(template: &str, key: &str) -> Vec<OptionError> {
    let mut errors = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            errors.push(OptionError::at(key, format!("unclosed `{{` in `{key}`")));
            break;
        };
        let ph = &rest[open + 1..open + close];
        if !PLACEHOLDERS.contains(&ph) {
            let mut e = OptionError::at(key, format!("unknown placeholder `{{{ph}}}` in `{key}`"));
            e.help = crate::suggest::suggest(ph, PLACEHOLDERS)
                .map(|s| format!("did you mean `{{{s}}}`?"))
                .or_else(|| {
                    Some(format!(
                        "placeholders: {}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                    ))
                });
            errors.push(e);
        }
        rest = &rest[open + close + 1..];
    }
    if template.trim().is_empty() {
        errors.push(OptionError::at(key, format!("`{key}` must not be empty")));
    } else if Path::new(template).is_absolute() || template.split(['/', '\\']).any(|p| p == "..") {
        errors.push(OptionError::at(
            key,
            format!("`{key}` must stay inside `dir` (no `..`, no absolute path)"),
        ));
    }
    errors
}

/// Civil date (UTC) of a Unix time, without a calendar crate.
fn civil_date(secs: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The output path (relative to the output folder) for `item`. `ext` is the
/// extension for `{ext}`: the encoded format's if the item has one, else the
/// source's.
///
/// Names are bytes: the parts taken from the item's path keep their exact
/// bytes, UTF-8 or not, so two sources whose names differ only in bytes that
/// are not UTF-8 get two different outputs.
pub fn render(template: &str, item: &Item) -> Result<PathBuf, StageError> {
    let rel = &item.rel;
    let mut rel_dir = Vec::new();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        if !rel_dir.is_empty() {
            rel_dir.push(b'/');
        }
        rel_dir.extend_from_slice(c.as_os_str().as_bytes());
    }
    let stem = rel.file_stem().map(OsStr::as_bytes).unwrap_or_default();
    let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let ext: Vec<u8> = match &item.meta.format {
        Some(f) => super::encode::extension_for(f).as_bytes().to_vec(),
        None => rel
            .extension()
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    let date = item.meta.mtime.map(civil_date);
    let needs = |ph: &str| template.contains(&format!("{{{ph}}}"));
    if needs("hash") && item.meta.hash.is_none() {
        return Err(StageError::new(
            "`{hash}` needs a `hash` stage before this one",
        ));
    }
    if ["date", "year", "month", "day"].iter().any(|p| needs(p)) && date.is_none() {
        return Err(StageError::new(
            "the file's modification time is unknown, so `{date}` can't be filled",
        ));
    }
    let (y, m, d) = date.unwrap_or((0, 0, 0));
    let hash = item.meta.hash.as_deref().unwrap_or("");
    let (ymd, year, month, day) = (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{y:04}"),
        format!("{m:02}"),
        format!("{d:02}"),
    );
    let value = |ph: &str| -> Option<&[u8]> {
        Some(match ph {
            "rel_dir" => rel_dir.as_slice(),
            "stem" => stem,
            "name" => name,
            "ext" => ext.as_slice(),
            "hash" => hash.as_bytes(),
            "date" => ymd.as_bytes(),
            "year" => year.as_bytes(),
            "month" => month.as_bytes(),
            "day" => day.as_bytes(),
            _ => return None,
        })
    };
    // Rendered segment by segment, so an empty `{rel_dir}` (a file at the
    // scan root) leaves no empty or absolute component behind. Each segment
    // is filled in one pass: a value that happens to contain `{ext}` is
    // kept as it is, not filled again.
    let mut out = PathBuf::new();
    for segment in template.split('/') {
        let mut rendered: Vec<u8> = Vec::with_capacity(segment.len());
        let mut rest = segment;
        while let Some(open) = rest.find('{') {
            rendered.extend_from_slice(&rest.as_bytes()[..open]);
            let filled = rest[open..]
                .find('}')
                .and_then(|close| Some((value(&rest[open + 1..open + close])?, close)));
            match filled {
                Some((v, close)) => {
                    rendered.extend_from_slice(v);
                    rest = &rest[open + close + 1..];
                }
                None => {
                    rendered.push(b'{');
                    rest = &rest[open + 1..];
                }
            }
        }
        rendered.extend_from_slice(rest.as_bytes());
        let rendered = OsStr::from_bytes(&rendered);
        for comp in Path::new(rendered).components() {
            match comp {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                _ => {
                    return Err(StageError::new(format!(
                        "output name `{template}` gives `{}`, which would land outside the output folder",
                        crate::item::escape_bytes(rendered.as_bytes())
                    )));
                }
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(StageError::new("output name is empty"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let name = |b: &[u8]| PathBuf::from(std::ffi::OsString::from_vec(b.to_vec()));
        let a = Item::new(name(b"/p/d\xfe/x\xff.png"), name(b"d\xfe/x\xff.png"));
        let b = Item::new(name(b"/p/d\xfe/x\xfe.png"), name(b"d\xfe/x\xfe.png"));
        let (ra, rb) = (
            render("{rel_dir}/{stem}_s.{ext}", &a).unwrap(),
            render("{rel_dir}/{stem}_s.{ext}", &b).unwrap(),
        );
        assert_eq!(ra, name(b"d\xfe/x\xff_s.png"));
        assert_eq!(rb, name(b"d\xfe/x\xfe_s.png"));
        assert_eq!(render("{name}", &a).unwrap(), name(b"x\xff.png"));
    }

    #[test]
    fn dates_from_unix_time() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_764_028_800), (2025, 11, 25));
    }

    #[test]
    fn renders_placeholders_and_stays_inside() {
        let mut item = Item::new("/p/a/b/IMG_1.JPG".into(), "b/IMG_1.JPG".into());
        item.meta.mtime = Some(951_782_400);
        item.meta.hash = Some("abcd".into());
        assert_eq!(
            render("{rel_dir}/{stem}.{ext}", &item).unwrap(),
            PathBuf::from("b/IMG_1.JPG")
        );
        assert_eq!(
            render("{year}/{month}/{name}", &item).unwrap(),
            PathBuf::from("2000/02/IMG_1.JPG")
        );
        assert_eq!(
            render("{hash}.{ext}", &item).unwrap(),
            PathBuf::from("abcd.JPG")
        );
        item.meta.format = Some("jpeg".into());
        assert_eq!(
            render("{stem}_small.{ext}", &item).unwrap(),
            PathBuf::from("IMG_1_small.jpg")
        );
        let top = Item::new("/p/x.png".into(), "x.png".into());
        assert_eq!(
            render("{rel_dir}/{stem}.{ext}", &top).unwrap(),
            PathBuf::from("x.png")
        );
        assert!(render("{hash}", &top).is_err());
        // A value is filled in once, not read again as a template.
        let braces = Item::new("/p/{ext}.png".into(), "{ext}.png".into());
        assert_eq!(
            render("{stem}.{ext}", &braces).unwrap(),
            PathBuf::from("{ext}.png")
        );
        assert_eq!(validate("../{stem}", "filename").len(), 1);
        assert_eq!(
            validate("{stme}", "filename")[0].help.as_deref(),
            Some("did you mean `{stem}`?")
        );
    }
}
