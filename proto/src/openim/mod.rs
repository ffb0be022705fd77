//! A mirror of OpenIM's Go callback structs, as data: what each before-callback's answer may
//! hold (`answers`), what every callback's request holds, before and after (`requests`), and
//! how Go's `encoding/json` decodes JSON into them (`go`).
//!
//! Data rather than one serde struct per command: Go matches keys ignoring case and
//! ignores unknown ones, which derived serde structs do not, and one decoder over a table
//! serves all 29 before-callbacks alike.

pub mod answers;
pub mod go;
pub mod requests;
