//! What `connect` remembers of where it was (its name, its rooms, the last
//! position it saw in each), to come back there after a dropped connection.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Where a client is, as the server's answers told it.
#[derive(Debug, Default)]
pub struct Whereabouts {
    /// The name it chose (`None`: the server's guest name, not kept).
    name: Option<String>,
    /// Its rooms, in the order joined: the last is the current one.
    rooms: Vec<String>,
    /// The offset of the last message seen in each room (JSON only).
    offsets: HashMap<String, String>,
}

impl Whereabouts {
    /// Takes in one line the server sent.
    pub fn heard(&mut self, line: &[u8], json: bool) {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let line = line.trim_end();
        if json {
            if let Ok(event) = serde_json::from_str::<Value>(line) {
                self.heard_json(&event);
            }
        } else {
            self.heard_text(line);
        }
    }

    fn heard_json(&mut self, event: &Value) {
        let text = |key: &str| event[key].as_str().map(str::to_owned);
        let you = event["you"] == true;
        match event["type"].as_str() {
            Some("welcome") => {
                if let Some(room) = text("room") {
                    self.entered(room);
                }
            }
            Some("joined") if you => {
                if let Some(room) = text("room") {
                    self.entered(room);
                }
            }
            Some("left") if you => {
                if let Some(room) = text("room") {
                    self.rooms.retain(|r| *r != room);
                }
            }
            Some("hello") => {
                self.name = text("name").filter(|name| !name.starts_with("guest-"));
                self.rooms.clear();
                if let Some(room) = text("room") {
                    self.entered(room);
                }
            }
            Some("renamed") if you => self.name = text("new"),
            Some("message") => {
                if let (Some(room), Some(offset)) = (text("room"), text("offset")) {
                    self.offsets.insert(room, offset);
                }
            }
            _ => {}
        }
    }

    fn heard_text(&mut self, line: &str) {
        let Some(notice) = line.strip_prefix("* ") else {
            return;
        };
        // `#ops (3 members)...` or `#ops; ...`: the room's name ends at
        // the first space or `;` (names hold neither).
        let room_in = |rest: &str| {
            rest.strip_prefix('#')
                .and_then(|rest| rest.split([' ', ';']).next())
                .filter(|room| !room.is_empty())
                .map(str::to_owned)
        };
        if let Some(rest) = notice.strip_prefix("welcome ") {
            if let Some(room) = rest.split(" you are in ").nth(1).and_then(room_in) {
                self.entered(room);
            }
        } else if let Some(rest) = notice.strip_prefix("you joined ") {
            if let Some(room) = room_in(rest) {
                self.entered(room);
            }
        } else if let Some(rest) = notice.strip_prefix("you left ") {
            if let Some(room) = room_in(rest) {
                self.rooms.retain(|r| *r != room);
            }
        } else if let Some(rest) = notice.strip_prefix("hello ") {
            let (name, rest) = rest.split_once(": you are in ").unwrap_or((rest, ""));
            self.name = Some(name.to_owned()).filter(|name| !name.starts_with("guest-"));
            self.rooms.clear();
            if let Some(room) = room_in(rest) {
                self.entered(room);
            }
        } else if let Some(name) = notice.strip_prefix("you are now known as ") {
            self.name = Some(name.to_owned());
        }
    }

    fn entered(&mut self, room: String) {
        self.rooms.retain(|r| *r != room);
        self.rooms.push(room);
    }

    /// The rooms, current last, as a person reads them: `#lobby, #ops`.
    pub fn rooms(&self) -> String {
        self.rooms
            .iter()
            .map(|room| format!("#{room}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What to send on a new connection to be back where the last one
    /// was: the name (as a hello), then each room, the current one last;
    /// in JSON, each from the last position seen, so the server replays
    /// what was missed (or says what was lost). A text listener shows
    /// what was missed if it has `?history=N`.
    pub fn requests(&self, json: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line = |line: String| {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        };
        if let Some(name) = &self.name {
            line(match json {
                true => json!({"type": "hello", "name": name}).to_string(),
                false => format!("/hello name={name}"),
            });
        }
        for room in &self.rooms {
            line(match (json, self.offsets.get(room)) {
                (true, Some(since)) => {
                    json!({"type": "join", "room": room, "since": since}).to_string()
                }
                (true, None) => json!({"type": "join", "room": room}).to_string(),
                (false, _) => format!("/join {room}"),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(lines: &[&str], json: bool) -> String {
        let mut whereabouts = Whereabouts::default();
        for line in lines {
            whereabouts.heard(line.as_bytes(), json);
        }
        String::from_utf8(whereabouts.requests(json)).unwrap()
    }

    #[test]
    fn a_text_client_comes_back_named_in_its_rooms_the_current_last() {
        let requests = after(
            &[
                "* welcome guest-4! you are in #lobby; type /help for commands",
                "* you are now known as alice",
                "* you joined #ops (3 members); your messages go there now",
                "* you joined #dev-7 (1 member); your messages go there now",
                "[#ops] bob: hi",
                "* you left #dev-7; your messages go to #ops now",
                "* you joined #lobby (2 members); your messages go there now",
            ],
            false,
        );
        assert_eq!(requests, "/hello name=alice\n/join ops\n/join lobby\n");
        // A guest name is the server's to give again.
        assert_eq!(
            after(
                &["* welcome guest-4! you are in #lobby; type /help for commands"],
                false
            ),
            "/join lobby\n"
        );
    }

    #[test]
    fn a_json_client_comes_back_from_the_last_position_of_each_room() {
        let requests = after(
            &[
                r#"{"type":"welcome","name":"guest-1","room":"lobby"}"#,
                r#"{"type":"hello","name":"app","room":"ops","members":2}"#,
                r#"{"type":"message","room":"ops","from":"a","text":"x","offset":"ab-4"}"#,
                r#"{"type":"joined","room":"dev","members":1,"you":true}"#,
                r#"{"type":"joined","room":"dev","name":"someone"}"#,
                r#"{"type":"message","room":"ops","from":"a","text":"y","offset":"ab-5"}"#,
            ],
            true,
        );
        assert_eq!(
            requests,
            concat!(
                r#"{"type":"hello","name":"app"}"#,
                "\n",
                r#"{"type":"join","room":"ops","since":"ab-5"}"#,
                "\n",
                r#"{"type":"join","room":"dev"}"#,
                "\n"
            )
        );
    }
}
