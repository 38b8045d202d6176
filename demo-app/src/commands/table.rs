//! Plain-text tables with aligned columns, for the human output of `stats` and `dead-letters`.

use crate::safe;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// `header` and `rows` as lines of columns two spaces apart, each line ending in a newline and
/// without trailing spaces. Widths count characters, so `µs` lines up. Every cell is shown
/// terminal-safe ([`safe::text`]): tables are where plugins' names and reasons end up.
pub fn render(header: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| safe::text(c).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(align.iter().chain(std::iter::repeat(&Align::Left)))
            .map(|((cell, &width), align)| {
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                match align {
                    Align::Left => format!("{cell}{pad}"),
                    Align::Right => format!("{pad}{cell}"),
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_text_left_and_numbers_right() {
        let rows = vec![
            vec!["greeter".to_owned(), "12".to_owned(), "x".to_owned()],
            vec!["a".to_owned(), "3".to_owned(), String::new()],
        ];
        let text = render(
            &["NAME", "P50 µs", "NOTE"],
            &[Align::Left, Align::Right],
            &rows,
        );
        assert_eq!(
            text,
            "NAME     P50 µs  NOTE\ngreeter      12  x\na             3\n"
        );
    }
}
