//! The shared runner for the data-driven tables in `testdata/`.

/// Checks every case of `table` against `render`, then reports all mismatches at once.
///
/// A case is one line, `<input> => <expected rendering>`; blank lines and `#` comments are
/// skipped, and the input `""` stands for the empty string. The failure message lists the
/// corrected lines, ready to paste back into the file once the new output is judged right.
pub(crate) fn check_table(table: &str, render: impl Fn(&str) -> String) {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (number, line) in table.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (raw_input, expected) = line
            .split_once(" => ")
            .unwrap_or_else(|| panic!("line {}: no ` => ` in {line:?}", number + 1));
        let input = if raw_input == "\"\"" { "" } else { raw_input };
        cases += 1;
        let actual = render(input);
        if actual != expected {
            failures.push(format!("line {}:\n{raw_input} => {actual}", number + 1));
        }
    }
    assert!(cases > 0, "the table has no cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
