//! Parsing the simulator's JSON-lines trace format (see the module doc of [`super`]).

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("trace line {line}: {detail}")]
    Line { line: usize, detail: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    t: u64,
    image: String,
    #[serde(default)]
    layers: Option<Vec<(String, u64)>>,
    #[serde(default)]
    duration: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub t: u64,
    pub image: String,
    pub duration: u64,
}

/// A parsed trace: events in time order, each image's layers, each layer's size.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub events: Vec<Event>,
    pub images: HashMap<String, Vec<(String, u64)>>,
    pub layer_sizes: HashMap<String, u64>,
    /// Repositories of images named by id (a recording's pulls); others are named by their
    /// reference (`svc3:r2` is repository `svc3`).
    pub repositories: HashMap<String, String>,
}

impl Trace {
    /// The repository `image` was pulled as, if the trace tells.
    pub fn repository<'a>(&'a self, image: &'a str) -> Option<&'a str> {
        match self.repositories.get(image) {
            Some(r) => Some(r),
            None => crate::gc::history::repository_of(image),
        }
    }

    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut out = Trace::default();
        let mut last_t = 0;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |detail: String| TraceError::Line {
                line: line_no,
                detail,
            };
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let ev: RawEvent = serde_json::from_str(l).map_err(|e| err(e.to_string()))?;
            if ev.t < last_t {
                return Err(err(format!("time {} goes back (previous {last_t})", ev.t)));
            }
            last_t = ev.t;
            match (&ev.layers, out.images.get(&ev.image)) {
                (Some(layers), Some(known)) if layers != known => {
                    return Err(err(format!("image {} changes its layers", ev.image)))
                }
                (Some(layers), None) => {
                    if layers.is_empty() {
                        return Err(err(format!("image {} has no layers", ev.image)));
                    }
                    for (id, size) in layers {
                        match out.layer_sizes.get(id) {
                            Some(s) if s != size => {
                                return Err(err(format!(
                                    "layer {id} is {size} bytes here and {s} bytes earlier"
                                )))
                            }
                            _ => {
                                out.layer_sizes.insert(id.clone(), *size);
                            }
                        }
                    }
                    out.images.insert(ev.image.clone(), layers.clone());
                }
                (None, None) => {
                    return Err(err(format!(
                        "first event of image {} must list its layers",
                        ev.image
                    )))
                }
                _ => {}
            }
            out.events.push(Event {
                t: ev.t,
                image: ev.image,
                duration: ev.duration,
            });
        }
        Ok(out)
    }

    /// Writes the trace back in its file format (layers on each image's first event).
    pub fn to_jsonl(&self) -> String {
        let mut seen = std::collections::HashSet::new();
        let mut s = String::new();
        for e in &self.events {
            let mut v = serde_json::json!({"t": e.t, "image": e.image, "duration": e.duration});
            if seen.insert(e.image.clone()) {
                v["layers"] = serde_json::json!(self.images[&e.image]);
            }
            s.push_str(&v.to_string());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let e = Trace::parse("{\"t\":1,\"image\":\"a\"}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "trace line 1: first event of image a must list its layers"
        );
        let e = Trace::parse(
            "{\"t\":5,\"image\":\"a\",\"layers\":[[\"x\",1]]}\n\n{\"t\":4,\"image\":\"a\"}",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("trace line 3: time 4 goes back"),
            "{e}"
        );
        let e = Trace::parse(
            "{\"t\":1,\"image\":\"a\",\"layers\":[[\"x\",1]]}\n{\"t\":2,\"image\":\"b\",\"layers\":[[\"x\",2]]}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("layer x is 2 bytes here"), "{e}");
    }

    #[test]
    fn round_trips() {
        let t = Trace::parse(
            "{\"t\":1,\"image\":\"a\",\"layers\":[[\"x\",1]],\"duration\":3}\n{\"t\":2,\"image\":\"a\"}",
        )
        .unwrap();
        let again = Trace::parse(&t.to_jsonl()).unwrap();
        assert_eq!(again.events, t.events);
        assert_eq!(again.images, t.images);
    }
}
