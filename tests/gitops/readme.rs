//! Code blocks of the READMEs, which the tests run as written.

/// The first ```` ```LANG ```` block of `markdown` that contains `needle`.
pub fn code_block<'a>(markdown: &'a str, lang: &str, needle: &str) -> &'a str {
    markdown
        .split(&format!("```{lang}\n"))
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no ```{lang} block with {needle:?} in the README"))
}
