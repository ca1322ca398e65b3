//! One deterministic script per MiniWoB++ task. Each reads the instruction and the page from our
//! snapshot only and acts only through [`Agent`]'s clicks, typing, keys and selects — the way an
//! agent would through the MCP tools.

use anyhow::{anyhow, bail, Context as _};

use super::agent::Agent;
use super::page::{between, quoted, Element, Page};

/// The tasks this file solves, in the order the test runs them.
pub const TASKS: &[&str] = &[
    "click-test",
    "click-test-2",
    "click-button",
    "click-button-sequence",
    "unicode-test",
    "click-link",
    "click-dialog",
    "click-dialog-2",
    "click-checkboxes",
    "click-option",
    "click-tab",
    "click-tab-2",
    "click-widget",
    "click-collapsible",
    "choose-list",
    "click-scroll-list",
    "enter-text",
    "enter-text-2",
    "enter-password",
    "login-user",
    "focus-text",
    "focus-text-2",
    "enter-date",
    "enter-time",
    "simple-arithmetic",
    "simple-algebra",
    "read-table",
    "find-word",
    "use-autocomplete",
    "multi-orderings",
    // Families whose controls show no role, no text and no pointer (issue 14's held-out tasks):
    // swatches and icons with library-bound handlers, SVG figures, a tree's hidden branches.
    "click-color",
    "click-shades",
    "identify-shape",
    "navigate-tree",
    "social-media",
    "email-inbox-delete",
    "email-inbox-important",
    "click-menu",
    "choose-date",
];

/// Solves one episode of `task`, already started.
pub async fn solve(task: &str, agent: &mut Agent) -> anyhow::Result<()> {
    let page = agent.snapshot().await?;
    let q = page.query()?.to_owned();
    let solved = match task {
        "click-test" => click_button_named(agent, &page, "Click Me!").await,
        "click-test-2" => {
            // Click button ONE.
            let name = between(&q, "Click button ", ".")?;
            activate_button(agent, &page, name).await
        }
        "click-button" | "unicode-test" => {
            // Click on the "previous" button.
            click_button_named(agent, &page, first_quoted(&q)?).await
        }
        "click-button-sequence" => {
            // Click button ONE, then click button TWO.
            let first = between(&q, "Click button ", ",")?;
            let second = between(&q, "then click button ", ".")?;
            activate_button(agent, &page, first).await?;
            activate_button(agent, &page, second).await
        }
        "click-link" => {
            // Click on the link "Neque,". The links are spans with a click handler inside a
            // paragraph, listed as `span "Neque," (clickable)`.
            click_text_span(agent, &page, first_quoted(&q)?).await
        }
        "click-dialog" => {
            // Close the dialog box by clicking the "x".
            click_button_named(agent, &page, "Close").await
        }
        "click-dialog-2" => {
            // Click the button in the dialog box labeled "x" / "OK" / "Cancel".
            let label = match first_quoted(&q)? {
                "x" => "Close",
                other => other,
            };
            click_button_named(agent, &page, label).await
        }
        "click-checkboxes" => {
            // Select 3hIU, rS49 and click Submit. / Select nothing and click Submit.
            let list = between(&q, "Select ", " and click Submit.")?;
            let wanted: Vec<&str> = match list {
                "nothing" => Vec::new(),
                list => list.split(", ").collect(),
            };
            for b in page.all("input", Some("checkbox")) {
                if b.checked != wanted.contains(&b.name.as_str()) {
                    agent.click(b).await?;
                }
            }
            click_button_named(agent, &page, "Submit").await
        }
        "click-option" => {
            // Select S4 and click Submit.
            let name = between(&q, "Select ", " and click Submit.")?;
            agent
                .click(page.named("input", Some("radio"), name)?)
                .await?;
            click_button_named(agent, &page, "Submit").await
        }
        "click-tab" => {
            // Click on Tab #2. (The handler sits on the tab's link.)
            let name = between(&q, "Click on ", ".")?;
            agent.click(page.named("a", None, name)?).await
        }
        "click-tab-2" => click_tab_2(agent, &page, first_quoted(&q)?).await,
        "click-widget" => {
            // Click on a "textarea" widget.
            let (tag, kind) = match first_quoted(&q)? {
                "radio" => ("input", Some("radio")),
                "checkbox" => ("input", Some("checkbox")),
                "text" => ("input", Some("input")),
                "textarea" => ("textarea", None),
                "button" => ("button", None),
                other => bail!("unknown widget {other:?}"),
            };
            let el = page
                .all(tag, kind)
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no {tag} {kind:?} widget in\n{}", page.dump()))?;
            agent.click(el).await
        }
        "click-collapsible" => {
            // Expand the section below and click submit.
            agent.click(page.one("h3", Some("tab"))?).await?;
            let page = agent.snapshot().await?;
            click_button_named(agent, &page, "Submit").await
        }
        "choose-list" => {
            // Select Miguelita from the list and click Submit.
            let name = between(&q, "Select ", " from the list")?;
            agent.select(page.one("select", None)?, &[name]).await?;
            click_button_named(agent, &page, "Submit").await
        }
        "click-scroll-list" => {
            // Select Miguelita, Lolita from the scroll list and click Submit.
            let names: Vec<&str> = between(&q, "Select ", " from the scroll list")?
                .split(", ")
                .collect();
            agent.select(page.one("select", None)?, &names).await?;
            click_button_named(agent, &page, "Submit").await
        }
        "enter-text" => {
            // Enter "Bernardine" into the text field and press Submit.
            fill_and_submit(agent, &page, "text", first_quoted(&q)?).await
        }
        "enter-text-2" => {
            // Type "bernardine" in all upper case letters in the text input and press Submit.
            let word = first_quoted(&q)?;
            let text = if q.contains("upper case") {
                word.to_uppercase()
            } else if q.contains("lower case") {
                word.to_lowercase()
            } else {
                bail!("neither upper nor lower case in {q:?}")
            };
            fill_and_submit(agent, &page, "text", &text).await
        }
        "enter-password" => {
            // Enter the password "Q3h" into both text fields and press submit.
            let password = first_quoted(&q)?;
            for field in page.all("input", Some("password")) {
                agent.type_text(field, password).await?;
            }
            click_button_named(agent, &page, "Submit").await
        }
        "login-user" => {
            // Enter the username "keli" and the password "3hI" into the text fields and press login.
            let [user, password] = quoted(&q)[..] else {
                bail!("expected a username and a password in {q:?}")
            };
            agent
                .type_text(page.one("input", Some("text"))?, user)
                .await?;
            agent
                .type_text(page.one("input", Some("password"))?, password)
                .await?;
            click_button_named(agent, &page, "Login").await
        }
        "focus-text" => agent.click(page.one("input", Some("text"))?).await,
        "focus-text-2" => {
            // Focus into the 3rd input textbox.
            let nth = ordinal(between(&q, "Focus into the ", " input textbox")?)?;
            let fields = page.all("input", Some("text"));
            let field = fields
                .get(nth - 1)
                .ok_or_else(|| anyhow!("no text field #{nth} in\n{}", page.dump()))?;
            agent.click(field).await
        }
        "enter-date" => {
            // Enter 09/10/2012 as the date and hit submit. A date input takes YYYY-MM-DD.
            let date = between(&q, "Enter ", " as the date")?;
            let [month, day, year] = date.split('/').collect::<Vec<_>>()[..] else {
                bail!("not MM/DD/YYYY: {date:?}")
            };
            fill_and_submit(agent, &page, "date", &format!("{year}-{month}-{day}")).await
        }
        "enter-time" => {
            // Enter 8:22 AM as the time and press submit. A time input takes HH:MM (24 h).
            let time = between(&q, "Enter ", " as the time")?;
            fill_and_submit(agent, &page, "time", &time_24h(time)?).await
        }
        "simple-arithmetic" => {
            // Solve the math problem … / "2 x 4 = " on its own line.
            let problem = page
                .lines()
                .find(|l| l.ends_with('=') && !l.starts_with("x ="))
                .ok_or_else(|| anyhow!("no problem line in\n{}", page.dump()))?;
            let answer = arithmetic(problem.trim_end_matches('='))?;
            fill_and_submit(agent, &page, "text", &answer.to_string()).await
        }
        "simple-algebra" => {
            // Solve for x …  / "x + 2 = 43" or "12 - x = 3" on its own line.
            let equation = page
                .lines()
                .find(|l| l.contains('x') && l.contains('=') && !l.ends_with('='))
                .ok_or_else(|| anyhow!("no equation in\n{}", page.dump()))?;
            let answer = solve_for_x(equation)?;
            fill_and_submit(agent, &page, "text", &answer.to_string()).await
        }
        "read-table" => {
            // Enter the value of Gender into … / the table rows read "Gender\tFemale".
            let key = between(&q, "Enter the value of ", " into the text field")?;
            let value = page
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))
                .ok_or_else(|| anyhow!("no row {key:?} in\n{}", page.dump()))?;
            fill_and_submit(agent, &page, "text", value.trim()).await
        }
        "find-word" => {
            // Find the 4th word in the paragraph … / the paragraph is the next line.
            let nth = ordinal(between(&q, "Find the ", " word")?)?;
            let paragraph = page
                .lines()
                .nth(1)
                .ok_or_else(|| anyhow!("no paragraph in\n{}", page.dump()))?;
            let word = paragraph
                .split_whitespace()
                .nth(nth - 1)
                .ok_or_else(|| anyhow!("no word #{nth} in {paragraph:?}"))?;
            let word: String = word.chars().filter(char::is_ascii_alphanumeric).collect();
            fill_and_submit(agent, &page, "text", &word).await
        }
        "use-autocomplete" => use_autocomplete(agent, &page, &q).await,
        "multi-orderings" => multi_orderings(agent, &page, &q).await,
        "click-color" => {
            // Click on the yellow colored box. The boxes are `div "color" at (…) fill #ff0
            // yellow`: told apart by the hex, which any CSS colour name maps to. Some episodes
            // show the colour as a small swatch in the instruction instead of its name
            // ("Click on the  colored box."): the first coloured line, above the boxes.
            let name = between(&q, "Click on the ", " colored box")?.trim();
            let coloured: Vec<&Element> = page
                .elements
                .iter()
                .filter(|e| e.clickable && e.tag != "canvas" && rgb_of(e).is_some())
                .collect();
            let (wanted, boxes) = if name.is_empty() {
                let (swatch, boxes) = coloured
                    .split_first()
                    .ok_or_else(|| anyhow!("no swatch in\n{}", page.dump()))?;
                (rgb_of(swatch).unwrap_or_default(), boxes.to_vec())
            } else {
                (css_colour(name)?, coloured)
            };
            let el = boxes
                .into_iter()
                .find(|e| rgb_of(e) == Some(wanted))
                .ok_or_else(|| anyhow!("no box of {wanted:?} in\n{}", page.dump()))?;
            agent.click(el).await
        }
        "click-shades" => {
            // Select all the shades of blue and press Submit. Each swatch is an empty span with
            // its colour; a shade of a pure hue has that hue's channel the highest.
            let hue = between(&q, "shades of ", " and press")?;
            let channel = ["red", "green", "blue"]
                .iter()
                .position(|c| *c == hue)
                .ok_or_else(|| anyhow!("unknown hue {hue:?}"))?;
            let swatches: Vec<Element> = page
                .elements
                .iter()
                .filter(|e| e.tag == "span" && e.empty && e.clickable)
                .cloned()
                .collect();
            if swatches.is_empty() {
                bail!("no swatches in\n{}", page.dump());
            }
            for s in &swatches {
                let (r, g, b) = rgb_of(s).ok_or_else(|| anyhow!("no colour on {s:?}"))?;
                let rgb = [r, g, b];
                let top = (0..3).max_by_key(|&i| rgb[i]).unwrap_or(0);
                if top == channel {
                    agent.click(s).await?;
                }
            }
            click_button_named(agent, &page, "Submit").await
        }
        "identify-shape" => {
            // Click the button that best describes the figure below: one SVG shape, or a
            // letter or a digit drawn as SVG text.
            let figure = page
                .elements
                .iter()
                .find(|e| e.tag == "svg")
                .ok_or_else(|| anyhow!("no figure in\n{}", page.dump()))?;
            let label = match figure.kind.as_deref() {
                Some("rect") => "Rectangle",
                Some("circle") => "Circle",
                Some("polygon") => "Triangle",
                Some("text") if figure.name.chars().all(|c| c.is_ascii_digit()) => "Number",
                Some("text") => "Letter",
                other => bail!("unknown figure {other:?} in\n{}", page.dump()),
            };
            click_button_named(agent, &page, label).await
        }
        "navigate-tree" => navigate_tree(agent, page, first_quoted(&q)?).await,
        "social-media" => social_media(agent, &page, &q).await,
        "click-menu" => click_menu(agent, page.clone(), &q).await,
        "choose-date" => choose_date(agent, &page, &q).await,
        "email-inbox-delete" | "email-inbox-important" => {
            // Find the email by Gerta and click the trash icon to delete it / the star icon to
            // mark it as important. Each row (`div "Gerta Aenean. …"`) is followed by its own
            // icons, named by their image files (`span "delete"`, `span "star"`).
            let sender = between(&q, "Find the email by ", " and ")?;
            let icon = if q.contains("trash icon") {
                "delete"
            } else if q.contains("star icon") {
                "star"
            } else {
                bail!("neither the trash nor the star icon in {q:?}")
            };
            let row = page
                .elements
                .iter()
                .position(|e| e.tag == "div" && e.name.starts_with(&format!("{sender} ")))
                .ok_or_else(|| anyhow!("no email by {sender} in\n{}", page.dump()))?;
            let el = page.elements[row + 1..]
                .iter()
                .take(2)
                .find(|e| e.tag == "span" && e.name == icon)
                .ok_or_else(|| {
                    anyhow!(
                        "no {icon:?} icon after the row of {sender} in\n{}",
                        page.dump()
                    )
                })?;
            agent.click(el).await
        }
        other => bail!("no solver for {other}"),
    };
    solved.with_context(|| format!("solving {task} ({q:?})"))
}

/// Clicks the first button whose name is `name`.
async fn click_button_named(agent: &mut Agent, page: &Page, name: &str) -> anyhow::Result<()> {
    agent.click(page.named("button", None, name)?).await
}

/// Clicks a button; when the click cannot land because another element covers the button's
/// centre (these tasks place buttons at random, sometimes overlapping), presses Enter on it.
async fn activate_button(agent: &mut Agent, page: &Page, name: &str) -> anyhow::Result<()> {
    let button = page.named("button", None, name)?;
    match agent.click(button).await {
        Ok(()) => Ok(()),
        Err(click) => agent
            .press(Some(button), "Enter")
            .await
            .with_context(|| format!("after the click failed: {click:#}")),
    }
}

/// Types `text` into the only input of `kind` and clicks Submit.
async fn fill_and_submit(
    agent: &mut Agent,
    page: &Page,
    kind: &str,
    text: &str,
) -> anyhow::Result<()> {
    agent
        .type_text(page.one("input", Some(kind))?, text)
        .await?;
    click_button_named(agent, page, "Submit").await
}

/// Clicks the JS-only clickable span whose text is `text` (MiniWoB's "links"), by its ref.
async fn click_text_span(agent: &mut Agent, page: &Page, text: &str) -> anyhow::Result<()> {
    let span = page
        .elements
        .iter()
        .find(|e| e.tag == "span" && e.clickable && e.name == text)
        .ok_or_else(|| anyhow!("no clickable span {text:?} in\n{}", page.dump()))?
        .clone();
    agent.click(&span).await
}

/// Opens tab after tab until the wanted link's word shows in the visible text, then clicks it.
/// The word may also show as plain text in another tab; then the click finds no link there
/// and the search goes on.
async fn click_tab_2(agent: &mut Agent, first: &Page, word: &str) -> anyhow::Result<()> {
    let tabs: Vec<String> = first
        .all("a", None)
        .iter()
        .filter(|t| t.name.starts_with("Tab #"))
        .map(|t| t.name.clone())
        .collect();
    let mut page = first.clone();
    let mut misses = Vec::new();
    for tab in &tabs {
        let el = page.named("a", None, tab)?.clone();
        agent.click(&el).await?;
        page = agent.snapshot().await?;
        let shown = page.lines().skip(1).any(|l| {
            l.split_whitespace()
                .any(|w| w == word || w.trim_end_matches([',', '.']) == word)
        });
        if shown {
            match click_text_span(agent, &page, word).await {
                Ok(()) => return Ok(()),
                Err(e) => misses.push(format!("{tab}: {e:#}")),
            }
        }
    }
    bail!("no tab has a link {word:?}; tried: {misses:?}")
}

/// Types the start of the wanted item, then picks the suggestion with the wanted end by keyboard.
///
/// Not by clicking it: when the suggestion menu opens under a resting mouse pointer, jQuery UI's
/// autocomplete replays that first hover on the next mouse move, so a click that jumps straight to
/// the third suggestion (Playwright moves the pointer in one step) selects the first.
async fn use_autocomplete(agent: &mut Agent, page: &Page, q: &str) -> anyhow::Result<()> {
    // Enter an item that starts with "Egy" and ends with "gypt". (The end is optional.)
    let parts = quoted(q);
    let (start, end) = match parts[..] {
        [start, end] => (start, Some(end)),
        [start] => (start, None),
        _ => bail!("no start in {q:?}"),
    };
    let field = page.one("input", Some("text"))?.clone();
    agent.type_text(&field, start).await?;
    let mut last = None;
    for _ in 0..20 {
        let menu = agent.snapshot().await?;
        let items: Vec<&str> = menu
            .elements
            .iter()
            .filter(|e| e.tag == "li")
            .map(|e| e.name.as_str())
            .collect();
        let pick = items
            .iter()
            .position(|name| name.starts_with(start) && end.is_none_or(|end| name.ends_with(end)));
        if let Some(index) = pick {
            for _ in 0..=index {
                agent.press(Some(&field), "ArrowDown").await?;
            }
            agent.press(Some(&field), "Enter").await?;
            let after = agent.snapshot().await?;
            let value = after
                .elements
                .iter()
                .find(|e| e.id == field.id)
                .and_then(|e| e.value.as_deref());
            if value != Some(items[index]) {
                bail!("chose {:?} but the field holds {value:?}", items[index]);
            }
            return click_button_named(agent, &after, "Submit").await;
        }
        last = Some(menu);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!(
        "no suggestion for {start:?}…{end:?} in\n{}",
        last.map(|p| p.dump()).unwrap_or_default()
    )
}

/// Fills a form whose rows come in a random order. The element list shows three unlabelled text
/// fields; the aria outline shows which row header each one sits under.
async fn multi_orderings(agent: &mut Agent, page: &Page, q: &str) -> anyhow::Result<()> {
    // Search for drama movies directed by Holloway from year 2011.
    let genre = between(q, "Search for ", " movies directed by ")?;
    let director = between(q, " movies directed by ", " from year ")?;
    let year = between(q, " from year ", ".")?;
    let outline = agent.aria().await?;
    let fields = labelled_textboxes(&outline);
    for (label, value) in [("Genre", genre), ("Director", director), ("Year", year)] {
        let id = fields
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, id)| id)
            .ok_or_else(|| anyhow!("no {label} field in the outline:\n{outline}"))?;
        let field = page
            .elements
            .iter()
            .find(|e| &e.id == id)
            .ok_or_else(|| anyhow!("{id} is not in the element list:\n{}", page.dump()))?;
        agent.type_text(field, value).await?;
    }
    let submit = page
        .elements
        .iter()
        .find(|e| e.clickable && e.name == "Submit")
        .ok_or_else(|| anyhow!("no clickable Submit in\n{}", page.dump()))?;
    agent.click(submit).await
}

/// (row header, textbox ref) pairs from an aria outline: each textbox belongs to the last
/// `rowheader "…"` above it.
fn labelled_textboxes(outline: &str) -> Vec<(String, String)> {
    let mut header = None;
    let mut out = Vec::new();
    for line in outline.lines().map(str::trim_start) {
        if let Some(rest) = line.strip_prefix("- rowheader ") {
            header = quoted(rest).first().map(|h| (*h).to_owned());
        } else if line.starts_with("- textbox") {
            let id = line.split("[ref=").nth(1).and_then(|r| r.split(']').next());
            if let (Some(h), Some(id)) = (&header, id) {
                out.push((h.clone(), id.to_owned()));
            }
        }
    }
    out
}

/// `1st`, `2nd`, `3rd`, `4th` → 1, 2, 3, 4.
fn ordinal(s: &str) -> anyhow::Result<usize> {
    s.trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .map_err(|_| anyhow!("not an ordinal: {s:?}"))
}

/// `8:22 AM` → `08:22`, `12:05 AM` → `00:05`, `1:30 PM` → `13:30`.
fn time_24h(s: &str) -> anyhow::Result<String> {
    let (clock, half) = s
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow!("no AM/PM in {s:?}"))?;
    let (h, m) = clock
        .split_once(':')
        .ok_or_else(|| anyhow!("no H:MM in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| anyhow!("bad hour in {s:?}"))?;
    let h = match (half, h) {
        ("AM", 12) => 0,
        ("AM", h) => h,
        ("PM", 12) => 12,
        ("PM", h) => h + 12,
        _ => bail!("neither AM nor PM in {s:?}"),
    };
    Ok(format!("{h:02}:{m}"))
}

/// `2 x 4 ` → 8; `3 - 9` → -6.
fn arithmetic(s: &str) -> anyhow::Result<i64> {
    let [a, op, b] = s.split_whitespace().collect::<Vec<_>>()[..] else {
        bail!("not `a op b`: {s:?}")
    };
    let (a, b): (i64, i64) = (number(a)?, number(b)?);
    Ok(match op {
        "+" => a + b,
        "-" => a - b,
        "x" | "*" => a * b,
        _ => bail!("unknown operator {op:?}"),
    })
}

/// `x + 2 = 43` → 41; `12 - x = 3` → 9; `x - 4 = 1` → 5.
fn solve_for_x(s: &str) -> anyhow::Result<i64> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let (["x" | "X", op, b, "=", c] | [b, op, "x" | "X", "=", c]) = tokens[..] else {
        bail!("not a linear equation in x: {s:?}")
    };
    let (b, c) = (number(b)?, number(c)?);
    let x_first = tokens[0].eq_ignore_ascii_case("x");
    Ok(match (op, x_first) {
        ("+", _) => c - b,
        ("-", true) => c + b,
        ("-", false) => b - c,
        _ => bail!("unknown operator {op:?} in {s:?}"),
    })
}

fn number(s: &str) -> anyhow::Result<i64> {
    s.parse().map_err(|_| anyhow!("not a number: {s:?}"))
}

fn first_quoted(q: &str) -> anyhow::Result<&str> {
    quoted(q)
        .first()
        .copied()
        .ok_or_else(|| anyhow!("nothing quoted in {q:?}"))
}

/// A CSS colour name's red, green and blue (the names these tasks use).
fn css_colour(name: &str) -> anyhow::Result<(u8, u8, u8)> {
    Ok(match name {
        "black" => (0, 0, 0),
        "white" => (255, 255, 255),
        "red" => (255, 0, 0),
        "lime" => (0, 255, 0),
        "green" => (0, 128, 0),
        "blue" => (0, 0, 255),
        "yellow" => (255, 255, 0),
        "cyan" | "aqua" => (0, 255, 255),
        "magenta" | "fuchsia" => (255, 0, 255),
        "grey" | "gray" => (128, 128, 128),
        "silver" => (192, 192, 192),
        "olive" => (128, 128, 0),
        "purple" => (128, 0, 128),
        "maroon" => (128, 0, 0),
        "navy" => (0, 0, 128),
        "teal" => (0, 128, 128),
        "orange" => (255, 165, 0),
        "pink" => (255, 192, 203),
        "gold" => (255, 215, 0),
        other => bail!("unknown colour {other:?}"),
    })
}

/// The red, green and blue of an element's `fill #e33 red` (3 or 6 hex digits).
fn rgb_of(el: &Element) -> Option<(u8, u8, u8)> {
    let hex = el.colour.as_deref()?.split(' ').next()?.strip_prefix('#')?;
    let digits: Vec<u8> = hex
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    match digits.as_slice() {
        [r, g, b] => Some((r * 17, g * 17, b * 17)),
        [r1, r2, g1, g2, b1, b2] => Some((r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2)),
        _ => None,
    }
}

/// Finds and clicks `name` in a file tree whose folders open by the toggle before their name
/// (listed as a `div` line just before the folder's `span`): a name not shown yet is in a closed
/// folder, so folders are opened one at a time, never clicking a file that is not the one.
async fn navigate_tree(agent: &mut Agent, mut page: Page, name: &str) -> anyhow::Result<()> {
    let mut opened: Vec<String> = Vec::new();
    for _ in 0..20 {
        // A folder is its name's span; a file, its item.
        if let Some(el) = page
            .elements
            .iter()
            .find(|e| (e.tag == "span" || e.tag == "li") && e.clickable && e.name == name)
        {
            return agent.click(&el.clone()).await;
        }
        let toggle = page
            .elements
            .windows(2)
            .find(|w| {
                w[0].tag == "div"
                    && w[0].clickable
                    && w[1].tag == "span"
                    && !opened.contains(&w[0].id)
            })
            .map(|w| w[0].clone())
            .ok_or_else(|| anyhow!("{name:?} is in no folder left to open in\n{}", page.dump()))?;
        opened.push(toggle.id.clone());
        agent.click(&toggle).await?;
        page = agent.snapshot().await?;
    }
    bail!("{name:?} not found after opening 20 folders")
}

/// For the user @x, click on the "Embed Tweet" button. Each post's details line (`Name @user
/// 3h ago`) is in the text, and its icons (`span "reply"`, `"retweet"`, `"like"`, `"more"`)
/// are in the elements in the same order; the other actions are in the menu `more` opens
/// (its items listed once it shows).
async fn social_media(agent: &mut Agent, page: &Page, q: &str) -> anyhow::Result<()> {
    let user = between(q, "For the user ", ", click on")?;
    let action = first_quoted(q)?;
    let posts: Vec<&str> = page
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().any(|w| w.starts_with('@')) && l.ends_with(" ago"))
        .collect();
    let k = posts
        .iter()
        .position(|l| l.split_whitespace().any(|w| w == user))
        .ok_or_else(|| anyhow!("no post by {user} in {posts:?}"))?;
    let icon = |name: &str| -> anyhow::Result<Element> {
        page.elements
            .iter()
            .filter(|e| e.tag == "span" && e.clickable && e.name == name)
            .nth(k)
            .cloned()
            .ok_or_else(|| anyhow!("no {name:?} icon for post {k} in\n{}", page.dump()))
    };
    match action {
        "Reply" | "Retweet" | "Like" => agent.click(&icon(&action.to_lowercase())?).await,
        _ => {
            agent.click(&icon("more")?).await?;
            let menu = agent.snapshot().await?;
            let item = menu
                .elements
                .iter()
                // `Mute @user`, `Block @user`: the item starts with the action.
                .find(|e| e.tag == "li" && e.name.starts_with(action))
                .cloned()
                .ok_or_else(|| anyhow!("no menu item {action:?} in\n{}", menu.dump()))?;
            agent.click(&item).await
        }
    }
}

/// Select Almira>Sherye>Anissa: a menu whose submenus open while the pointer rests on their
/// item (`div[role=menuitem]` lines). Each item but the last is hovered, the last clicked; a
/// submenu that opens after a delay is looked for again in a later snapshot.
async fn click_menu(agent: &mut Agent, mut page: Page, q: &str) -> anyhow::Result<()> {
    let path: Vec<&str> = q
        .strip_prefix("Select ")
        .ok_or_else(|| anyhow!("no \"Select \" in {q:?}"))?
        .split('>')
        .collect();
    for (i, item) in path.iter().enumerate() {
        let mut tries = 0;
        let el = loop {
            let found = page
                .elements
                .iter()
                .find(|e| e.kind.as_deref() == Some("menuitem") && e.name == *item)
                .cloned();
            match found {
                Some(el) => break el,
                None if tries < 10 => {
                    // jQuery UI opens a submenu 300 ms after the pointer enters its item; a
                    // model's next call comes later than that anyway.
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                    page = agent.snapshot().await?;
                }
                None => bail!("no menu item {item:?} in\n{}", page.dump()),
            }
        };
        if i + 1 == path.len() {
            return agent.click(&el).await;
        }
        agent.hover(&el).await?;
        page = agent.snapshot().await?;
    }
    bail!("an empty menu path in {q:?}")
}

/// Select 10/03/2016 as the date and hit submit: a calendar opens from the field, showing one
/// month (`December 2016` in the text) with `a "Prev"` / `a "Next"` (no href, no role: issue
/// 14's calendar) and a link per day. The calendar is drawn anew on each move, so each move is
/// followed by a snapshot.
async fn choose_date(agent: &mut Agent, page: &Page, q: &str) -> anyhow::Result<()> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let date = between(q, "Select ", " as the date")?;
    let parts: Vec<i32> = date
        .split('/')
        .map(|p| p.parse().with_context(|| format!("{date:?}")))
        .collect::<anyhow::Result<_>>()?;
    let [month, day, year] = parts[..] else {
        bail!("not MM/DD/YYYY: {date:?}")
    };
    agent.click(page.one("input", Some("text"))?).await?;
    let mut page = agent.snapshot().await?;
    for _ in 0..60 {
        let shown = page
            .lines()
            .find_map(|l| {
                // `December&nbsp;2016`.
                let mut words = l.split_whitespace();
                let (m, y) = (words.next()?, words.next()?);
                let m = MONTHS.iter().position(|n| *n == m)? as i32 + 1;
                Some((m, y.parse::<i32>().ok()?))
            })
            .ok_or_else(|| anyhow!("no month shown in\n{}", page.dump()))?;
        let diff = (year - shown.1) * 12 + (month - shown.0);
        if diff == 0 {
            let day = page
                .elements
                .iter()
                .find(|e| e.tag == "a" && e.name == day.to_string())
                .ok_or_else(|| anyhow!("no day {day} in\n{}", page.dump()))?
                .clone();
            agent.click(&day).await?;
            let page = agent.snapshot().await?;
            return click_button_named(agent, &page, "Submit").await;
        }
        let way = if diff < 0 { "Prev" } else { "Next" };
        let el = page.named("a", None, way)?.clone();
        agent.click(&el).await?;
        page = agent.snapshot().await?;
    }
    bail!("{date} not reached in 60 months")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_numbers_tasks_ask_for() {
        assert_eq!(ordinal("3rd").ok(), Some(3));
        assert_eq!(ordinal("11th").ok(), Some(11));
        assert_eq!(time_24h("8:22 AM").ok().as_deref(), Some("08:22"));
        assert_eq!(time_24h("12:05 AM").ok().as_deref(), Some("00:05"));
        assert_eq!(time_24h("12:40 PM").ok().as_deref(), Some("12:40"));
        assert_eq!(time_24h("1:30 PM").ok().as_deref(), Some("13:30"));
        assert_eq!(arithmetic("2 x 4 ").ok(), Some(8));
        assert_eq!(arithmetic("3 - 9").ok(), Some(-6));
        assert_eq!(solve_for_x("x + 2 = 43").ok(), Some(41));
        assert_eq!(solve_for_x("x - 4 = 1").ok(), Some(5));
        assert_eq!(solve_for_x("12 - x = 3").ok(), Some(9));
        assert_eq!(solve_for_x("7 + x = 9").ok(), Some(2));
    }

    #[test]
    fn pairs_textboxes_with_their_row_headers() {
        let outline = "- table [ref=ref_9]:\n  - row [ref=ref_2]:\n    - rowheader \"Year\" [ref=ref_3]\n    \
                       - cell [ref=ref_4]:\n      - textbox [ref=ref_5]\n  - row [ref=ref_6]:\n    \
                       - rowheader \"Genre\" [ref=ref_7]\n    - cell [ref=ref_8]:\n      - textbox [ref=ref_1]\n";
        assert_eq!(
            labelled_textboxes(outline),
            [
                ("Year".to_owned(), "ref_5".to_owned()),
                ("Genre".to_owned(), "ref_1".to_owned())
            ]
        );
    }
}
