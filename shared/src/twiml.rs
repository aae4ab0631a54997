//! A small typed TwiML writer, limited to the verbs Tsunagu uses.
//!
//! The types only let valid nesting be built: `<Say>` inside `<Gather>`; exactly one `<Number>` or `<Conference>` inside `<Dial>` (a `Dial` without its
//! noun has a different type, which [`Response::dial`] does not accept). Unset attributes are
//! omitted, so Twilio's defaults apply.
//!
//! ```
//! # use tsunagu::twiml::{Response, Say};
//! let xml = Response::new()
//!     .say(Say::new("通話を終了します。").language("ja-JP").voice("Polly.Mizuki"))
//!     .hangup()
//!     .to_xml();
//! assert!(xml.ends_with("<Hangup/></Response>"));
//! ```

use std::fmt::Write as _;

/// The `Content-Type` of a TwiML answer.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The HTTP method Twilio uses for a URL attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// A TwiML document: `<Response>` and its verbs, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Response {
    verbs: Vec<Verb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Say(Say),
    Play(String),
    Pause(u32),
    Dial(Box<Dial>),
    Gather(Gather),
    Redirect(String),
    Hangup,
}

impl Response {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn say(self, say: Say) -> Self {
        self.push(Verb::Say(say))
    }

    /// `<Play>url</Play>`: audio Twilio fetches and plays.
    pub fn play(self, url: impl Into<String>) -> Self {
        self.push(Verb::Play(url.into()))
    }

    /// `<Pause length="seconds"/>`.
    pub fn pause(self, seconds: u32) -> Self {
        self.push(Verb::Pause(seconds))
    }

    pub fn dial(self, dial: Dial) -> Self {
        self.push(Verb::Dial(Box::new(dial)))
    }

    pub fn gather(self, gather: Gather) -> Self {
        self.push(Verb::Gather(gather))
    }

    /// `<Redirect>url</Redirect>`; Twilio fetches it with POST.
    pub fn redirect(self, url: impl Into<String>) -> Self {
        self.push(Verb::Redirect(url.into()))
    }

    pub fn hangup(self) -> Self {
        self.push(Verb::Hangup)
    }

    /// This document's verbs followed by `next`'s.
    pub fn then(mut self, next: Response) -> Self {
        self.verbs.extend(next.verbs);
        self
    }

    /// The document, XML declaration included.
    #[must_use]
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(128 + 160 * self.verbs.len());
        out.push_str(XML_DECLARATION);
        let response = Tag::open(&mut out, "Response");
        if self.verbs.is_empty() {
            response.empty();
        } else {
            response.children(|out| {
                for verb in &self.verbs {
                    verb.write(out);
                }
            });
        }
        out
    }

    fn push(mut self, verb: Verb) -> Self {
        self.verbs.push(verb);
        self
    }
}

impl Verb {
    fn write(&self, out: &mut String) {
        match self {
            Self::Say(say) => say.write(out),
            Self::Play(url) => Tag::open(out, "Play").text(url),
            Self::Pause(seconds) => Tag::open(out, "Pause")
                .num("length", Some(*seconds))
                .empty(),
            Self::Dial(dial) => dial.write(out),
            Self::Gather(gather) => gather.write(out),
            Self::Redirect(url) => Tag::open(out, "Redirect").text(url),
            Self::Hangup => Tag::open(out, "Hangup").empty(),
        }
    }
}

/// `<Say>`: text spoken by a text-to-speech voice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Say {
    text: String,
    language: Option<String>,
    voice: Option<String>,
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            language: None,
            voice: None,
        }
    }

    /// e.g. `"ja-JP"`.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// e.g. `"Polly.Mizuki"`, `"Polly.Takumi-Neural"`.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    fn write(&self, out: &mut String) {
        Tag::open(out, "Say")
            .attr("language", self.language.as_deref())
            .attr("voice", self.voice.as_deref())
            .text(&self.text);
    }
}

/// A `<Dial>` whose noun is not chosen yet: set its attributes, then call
/// [`Dial::number`] or [`Dial::conference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoNoun;

/// The single noun of a complete `<Dial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialNoun {
    Number(Number),
    Conference(Conference),
}

/// Recording settings of a `<Dial>` or a `<Conference>`: `record`, `recordingStatusCallback`
/// (posted with POST, Twilio's default) and `recordingStatusCallbackEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// `record-from-answer-dual` on a Dial, `record-from-start` on a Conference.
    pub mode: &'static str,
    pub status_callback: String,
    /// e.g. `"completed"`.
    pub status_callback_event: &'static str,
}

impl Recording {
    fn write<'a>(this: Option<&Self>, tag: Tag<'a>) -> Tag<'a> {
        tag.attr("record", this.map(|r| r.mode))
            .attr(
                "recordingStatusCallback",
                this.map(|r| r.status_callback.as_str()),
            )
            .attr(
                "recordingStatusCallbackEvent",
                this.map(|r| r.status_callback_event),
            )
    }
}

/// `<Dial>`: connects the caller to one number or one conference.
///
/// `Dial::new()` has type `Dial<NoNoun>`; choosing the noun gives a `Dial` (that is,
/// `Dial<DialNoun>`), the only kind a [`Response`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Dial<N = DialNoun> {
    caller_id: Option<String>,
    time_limit: Option<u32>,
    timeout: Option<u32>,
    action: Option<String>,
    method: Option<Method>,
    answer_on_bridge: Option<bool>,
    ring_tone: Option<String>,
    record: Option<Recording>,
    noun: N,
}

impl Dial<NoNoun> {
    pub fn new() -> Self {
        Self {
            caller_id: None,
            time_limit: None,
            timeout: None,
            action: None,
            method: None,
            answer_on_bridge: None,
            ring_tone: None,
            record: None,
            noun: NoNoun,
        }
    }

    pub fn number(self, number: Number) -> Dial {
        self.with_noun(DialNoun::Number(number))
    }

    pub fn conference(self, conference: Conference) -> Dial {
        self.with_noun(DialNoun::Conference(conference))
    }

    fn with_noun(self, noun: DialNoun) -> Dial {
        Dial {
            caller_id: self.caller_id,
            time_limit: self.time_limit,
            timeout: self.timeout,
            action: self.action,
            method: self.method,
            answer_on_bridge: self.answer_on_bridge,
            ring_tone: self.ring_tone,
            record: self.record,
            noun,
        }
    }
}

impl Default for Dial<NoNoun> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N> Dial<N> {
    /// `callerId`: the number the called party sees (a proxy number, E.164).
    pub fn caller_id(mut self, caller_id: impl Into<String>) -> Self {
        self.caller_id = Some(caller_id.into());
        self
    }

    /// `timeLimit`: the longest the call may last, in seconds.
    pub fn time_limit(mut self, seconds: u32) -> Self {
        self.time_limit = Some(seconds);
        self
    }

    /// `timeout`: how long to let the called party ring, in seconds.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// `action`: where Twilio posts when the dialled call ends.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// `method` for `action`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// `answerOnBridge`: keep the caller hearing ringback until the other party answers.
    pub fn answer_on_bridge(mut self, on: bool) -> Self {
        self.answer_on_bridge = Some(on);
        self
    }

    /// `ringTone`: the ringback tone's country, e.g. `"jp"`.
    pub fn ring_tone(mut self, country: impl Into<String>) -> Self {
        self.ring_tone = Some(country.into());
        self
    }

    /// `record`, `recordingStatusCallback`, `recordingStatusCallbackEvent`.
    pub fn record(mut self, recording: Option<Recording>) -> Self {
        self.record = recording;
        self
    }
}

impl Dial {
    fn write(&self, out: &mut String) {
        let tag = Tag::open(out, "Dial").attr("callerId", self.caller_id.as_deref());
        Recording::write(self.record.as_ref(), tag)
            .num("timeLimit", self.time_limit)
            .num("timeout", self.timeout)
            .attr("action", self.action.as_deref())
            .method("method", self.method)
            .flag("answerOnBridge", self.answer_on_bridge)
            .attr("ringTone", self.ring_tone.as_deref())
            .children(|out| match &self.noun {
                DialNoun::Number(number) => number.write(out),
                DialNoun::Conference(conference) => conference.write(out),
            });
    }
}

/// `<Number>`: a phone number to dial, in E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Number {
    number: String,
    url: Option<String>,
    status_callback: Option<String>,
    status_callback_event: Option<String>,
}

impl Number {
    pub fn new(e164: impl Into<String>) -> Self {
        Self {
            number: e164.into(),
            url: None,
            status_callback: None,
            status_callback_event: None,
        }
    }

    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    /// `url`: TwiML run on the called party's end once they answer, before the two are
    /// connected (requested with POST, the default).
    pub fn url(mut self, url: Option<String>) -> Self {
        self.url = url;
        self
    }

    /// `statusCallbackEvent`: e.g. `&["initiated", "ringing", "answered", "completed"]`.
    pub fn status_callback_event(mut self, events: &[&str]) -> Self {
        self.status_callback_event = Some(events.join(" "));
        self
    }

    fn write(&self, out: &mut String) {
        Tag::open(out, "Number")
            .attr("url", self.url.as_deref())
            .attr("statusCallback", self.status_callback.as_deref())
            .attr("statusCallbackEvent", self.status_callback_event.as_deref())
            .text(&self.number);
    }
}

/// `<Conference>`: a named room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Conference {
    name: String,
    beep: Option<bool>,
    start_conference_on_enter: Option<bool>,
    end_conference_on_exit: Option<bool>,
    wait_url: Option<String>,
    wait_method: Option<Method>,
    status_callback: Option<String>,
    status_callback_event: Option<String>,
    participant_label: Option<String>,
    record: Option<Recording>,
}

impl Conference {
    pub fn new(room: impl Into<String>) -> Self {
        Self {
            name: room.into(),
            beep: None,
            start_conference_on_enter: None,
            end_conference_on_exit: None,
            wait_url: None,
            wait_method: None,
            status_callback: None,
            status_callback_event: None,
            participant_label: None,
            record: None,
        }
    }

    /// `record`, `recordingStatusCallback`, `recordingStatusCallbackEvent`.
    pub fn record(mut self, recording: Option<Recording>) -> Self {
        self.record = recording;
        self
    }

    pub fn beep(mut self, on: bool) -> Self {
        self.beep = Some(on);
        self
    }

    pub fn start_conference_on_enter(mut self, on: bool) -> Self {
        self.start_conference_on_enter = Some(on);
        self
    }

    /// Careful: a leg given new TwiML leaves the room, and with this set it closes the room
    /// for everyone (docs/DESIGN.md, Twilio's traps).
    pub fn end_conference_on_exit(mut self, on: bool) -> Self {
        self.end_conference_on_exit = Some(on);
        self
    }

    /// `waitUrl`: what participants hear before the conference starts.
    pub fn wait_url(mut self, url: impl Into<String>) -> Self {
        self.wait_url = Some(url.into());
        self
    }

    pub fn wait_method(mut self, method: Method) -> Self {
        self.wait_method = Some(method);
        self
    }

    /// Only the first participant's callback settings count: they become the conference's.
    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    /// `statusCallbackEvent`, in Twilio's short names: `start end join leave mute hold modify
    /// speaker announcement` (the callbacks themselves say `conference-start`,
    /// `participant-join`, …).
    pub fn status_callback_event(mut self, events: &[&str]) -> Self {
        self.status_callback_event = Some(events.join(" "));
        self
    }

    pub fn participant_label(mut self, label: impl Into<String>) -> Self {
        self.participant_label = Some(label.into());
        self
    }

    fn write(&self, out: &mut String) {
        let tag = Tag::open(out, "Conference")
            .flag("beep", self.beep)
            .flag("startConferenceOnEnter", self.start_conference_on_enter)
            .flag("endConferenceOnExit", self.end_conference_on_exit)
            .attr("waitUrl", self.wait_url.as_deref())
            .method("waitMethod", self.wait_method)
            .attr("statusCallback", self.status_callback.as_deref())
            .attr("statusCallbackEvent", self.status_callback_event.as_deref())
            .attr("participantLabel", self.participant_label.as_deref());
        Recording::write(self.record.as_ref(), tag).text(&self.name);
    }
}

/// `<Gather>`: collects digits (or speech) while optionally saying a prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Gather {
    input: Option<String>,
    num_digits: Option<u32>,
    timeout: Option<u32>,
    action: Option<String>,
    method: Option<Method>,
    action_on_empty_result: Option<bool>,
    prompts: Vec<Say>,
}

impl Gather {
    pub fn new() -> Self {
        Self::default()
    }

    /// `input`: `"dtmf"`, `"speech"` or `"dtmf speech"`.
    pub fn input(mut self, input: impl Into<String>) -> Self {
        self.input = Some(input.into());
        self
    }

    /// `numDigits`: answer as soon as this many digits are pressed.
    pub fn num_digits(mut self, digits: u32) -> Self {
        self.num_digits = Some(digits);
        self
    }

    /// `timeout`: seconds of silence that end the input.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// `actionOnEmptyResult`: call `action` even when nothing was pressed, so the timeout
    /// is handled by our code instead of falling through to the next verb.
    pub fn action_on_empty_result(mut self, on: bool) -> Self {
        self.action_on_empty_result = Some(on);
        self
    }

    pub fn say(mut self, say: Say) -> Self {
        self.prompts.push(say);
        self
    }

    fn write(&self, out: &mut String) {
        let tag = Tag::open(out, "Gather")
            .attr("input", self.input.as_deref())
            .num("numDigits", self.num_digits)
            .num("timeout", self.timeout)
            .attr("action", self.action.as_deref())
            .method("method", self.method)
            .flag("actionOnEmptyResult", self.action_on_empty_result);
        if self.prompts.is_empty() {
            tag.empty();
            return;
        }
        tag.children(|out| {
            for say in &self.prompts {
                say.write(out);
            }
        });
    }
}

/// Writes one element: open it, add attributes, then finish it as empty, with text, or
/// with child elements. Every string goes through [`push_escaped`].
struct Tag<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Tag<'a> {
    fn open(out: &'a mut String, name: &'static str) -> Self {
        out.push('<');
        out.push_str(name);
        Self { out, name }
    }

    fn attr(self, key: &str, value: Option<&str>) -> Self {
        if let Some(value) = value {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            push_escaped(self.out, value, true);
            self.out.push('"');
        }
        self
    }

    fn num(self, key: &str, value: Option<u32>) -> Self {
        if let Some(value) = value {
            // Writing into a String cannot fail.
            let _ = write!(self.out, " {key}=\"{value}\"");
        }
        self
    }

    fn flag(self, key: &str, value: Option<bool>) -> Self {
        self.attr(key, value.map(|on| if on { "true" } else { "false" }))
    }

    fn method(self, key: &str, value: Option<Method>) -> Self {
        self.attr(key, value.map(Method::as_str))
    }

    fn empty(self) {
        self.out.push_str("/>");
    }

    fn text(self, text: &str) {
        self.out.push('>');
        push_escaped(self.out, text, false);
        self.close();
    }

    fn children(self, write: impl FnOnce(&mut String)) {
        self.out.push('>');
        write(self.out);
        self.close();
    }

    fn close(self) {
        self.out.push_str("</");
        self.out.push_str(self.name);
        self.out.push('>');
    }
}

/// Appends `raw` as XML character data. Escapes the five markup characters; in attributes
/// also tab, CR and LF, which a parser would otherwise normalise to spaces. Characters XML 1.0
/// forbids (most C0 controls, U+FFFE, U+FFFF) are dropped: one stray control character in a
/// name would otherwise make the whole document invalid and Twilio would fail the call.
fn push_escaped(out: &mut String, raw: &str, in_attribute: bool) {
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A literal CR is turned into LF by every parser, in text too.
            '\r' => out.push_str("&#13;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            '\n' if in_attribute => out.push_str("&#10;"),
            '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => {
                out.push(c);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;
    use quick_xml::escape::resolve_predefined_entity;
    use quick_xml::events::{BytesStart, Event};

    #[test]
    fn recording_whisper_and_play_are_written_where_twilio_reads_them() {
        let recording = |mode| Recording {
            mode,
            status_callback: "https://a.example/twilio/voice/recording-status?session=KC1&x=1"
                .into(),
            status_callback_event: "completed",
        };
        let xml = Response::new()
            .play("https://a.example/a.mp3")
            .dial(
                Dial::new()
                    .record(Some(recording("record-from-answer-dual")))
                    .number(Number::new("+818098765432").url(Some("https://a.example/w".into()))),
            )
            .to_xml();
        assert!(
            xml.contains("<Play>https://a.example/a.mp3</Play>"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<Dial record="record-from-answer-dual" recordingStatusCallback="https://a.example/twilio/voice/recording-status?session=KC1&amp;x=1" recordingStatusCallbackEvent="completed">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<Number url="https://a.example/w">+818098765432</Number>"#),
            "{xml}"
        );
        let room =
            Response::new()
                .dial(Dial::new().conference(
                    Conference::new("room").record(Some(recording("record-from-start"))),
                ))
                .to_xml();
        assert!(room.contains(r#"record="record-from-start""#), "{room}");
        let plain = Response::new()
            .dial(
                Dial::new()
                    .record(None)
                    .number(Number::new("+818098765432").url(None)),
            )
            .to_xml();
        assert!(
            !plain.contains("record") && !plain.contains("url="),
            "{plain}"
        );
    }

    /// An element as read back by quick-xml, with attributes and text unescaped.
    #[derive(Debug, Default, PartialEq)]
    struct Node {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
        children: Vec<Node>,
    }

    impl Node {
        fn attr(&self, key: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find_map(|(k, v)| (k == key).then_some(v.as_str()))
        }

        fn names(&self) -> Vec<&str> {
            self.children.iter().map(|c| c.name.as_str()).collect()
        }
    }

    fn node(start: &BytesStart<'_>) -> Node {
        let attrs = start
            .attributes()
            .map(|attr| {
                let attr = attr.expect("well-formed attribute");
                let key = String::from_utf8(attr.key.as_ref().to_vec()).expect("UTF-8 key");
                let value = attr.unescape_value().expect("unescapable value");
                (key, value.into_owned())
            })
            .collect();
        Node {
            name: String::from_utf8(start.name().as_ref().to_vec()).expect("UTF-8 name"),
            attrs,
            ..Node::default()
        }
    }

    /// Parses a whole document strictly and returns its root element.
    fn parse(xml: &str) -> Node {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<Node> = Vec::new();
        let mut root = None;
        let mut saw_declaration = false;
        loop {
            let event = reader.read_event().expect("well-formed XML");
            let finished = match event {
                Event::Decl(decl) => {
                    assert!(stack.is_empty() && root.is_none(), "declaration first");
                    assert_eq!(decl.version().expect("version").as_ref(), b"1.0");
                    let encoding = decl.encoding().expect("encoding").expect("valid encoding");
                    assert_eq!(encoding.as_ref(), b"UTF-8");
                    saw_declaration = true;
                    None
                }
                Event::Start(start) => {
                    stack.push(node(&start));
                    None
                }
                Event::Empty(start) => Some(node(&start)),
                Event::End(_) => Some(stack.pop().expect("balanced tags")),
                Event::Text(text) => {
                    let top = stack.last_mut().expect("text inside an element");
                    top.text.push_str(&text.decode().expect("UTF-8 text"));
                    None
                }
                Event::GeneralRef(reference) => {
                    let top = stack.last_mut().expect("reference inside an element");
                    match reference.resolve_char_ref().expect("valid char ref") {
                        Some(c) => top.text.push(c),
                        None => {
                            let name = reference.decode().expect("UTF-8 entity name");
                            let resolved =
                                resolve_predefined_entity(&name).expect("predefined entity");
                            top.text.push_str(resolved);
                        }
                    }
                    None
                }
                Event::Eof => break,
                other => panic!("unexpected event {other:?}"),
            };
            if let Some(done) = finished {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => {
                        assert!(root.is_none(), "a single root element");
                        root = Some(done);
                    }
                }
            }
        }
        assert!(saw_declaration, "XML declaration present");
        assert!(stack.is_empty(), "all elements closed");
        let root = root.expect("a root element");
        assert_eq!(root.name, "Response");
        root
    }

    #[test]
    fn empty_response_is_valid_xml() {
        let xml = Response::new().to_xml();
        assert_eq!(xml, r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#);
        let root = parse(&xml);
        assert!(root.children.is_empty());
    }

    #[test]
    fn exact_output_for_a_simple_document() {
        let xml = Response::new()
            .say(
                Say::new("こんにちは")
                    .language("ja-JP")
                    .voice("Polly.Mizuki"),
            )
            .pause(1)
            .hangup()
            .to_xml();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Say language="ja-JP" voice="Polly.Mizuki">こんにちは</Say>"#,
                r#"<Pause length="1"/><Hangup/></Response>"#
            )
        );
    }

    #[test]
    fn verb_order_is_kept() {
        let root = parse(
            &Response::new()
                .redirect("https://a.example/r")
                .hangup()
                .say(Say::new("a"))
                .pause(2)
                .gather(Gather::new())
                .dial(Dial::new().number(Number::new("+819012345678")))
                .say(Say::new("b"))
                .to_xml(),
        );
        assert_eq!(
            root.names(),
            [
                "Redirect", "Hangup", "Say", "Pause", "Gather", "Dial", "Say"
            ]
        );
        assert_eq!(root.children[0].text, "https://a.example/r");
        assert_eq!(root.children[2].text, "a");
        assert_eq!(root.children[3].attr("length"), Some("2"));
        assert_eq!(root.children[6].text, "b");
    }

    #[test]
    fn say_escapes_markup_characters_and_keeps_japanese() {
        let text = r#"残り3分です & <b>"1"</b> を押して 'ください'"#;
        let xml = Response::new()
            .say(Say::new(text).language("ja-JP").voice("Polly.Mizuki"))
            .to_xml();
        // Japanese is written as UTF-8, not as character references.
        assert!(xml.contains("残り3分です"), "{xml}");
        assert!(!xml.contains("<b>"), "{xml}");
        let root = parse(&xml);
        let say = &root.children[0];
        assert_eq!(say.name, "Say");
        assert_eq!(say.text, text);
        assert_eq!(
            say.attrs,
            [
                ("language".to_owned(), "ja-JP".to_owned()),
                ("voice".to_owned(), "Polly.Mizuki".to_owned()),
            ]
        );
    }

    #[test]
    fn urls_with_query_strings_are_escaped_in_attributes_and_text() {
        let url = "https://api.tsunagu.example/twilio/voice/conference?session=KC1&participant=KP2";
        let hostile = r#"https://a.example/x?a="1"&b='2'&c=<3>"#;
        let root = parse(
            &Response::new()
                .redirect(url)
                .say(Say::new(hostile))
                .dial(
                    Dial::new()
                        .action(hostile)
                        .conference(Conference::new("KC1").wait_url(url).status_callback(url)),
                )
                .to_xml(),
        );
        assert_eq!(root.children[0].text, url);
        assert_eq!(root.children[1].text, hostile);
        let dial = &root.children[2];
        assert_eq!(dial.attr("action"), Some(hostile));
        let conference = &dial.children[0];
        assert_eq!(conference.attr("waitUrl"), Some(url));
        assert_eq!(conference.attr("statusCallback"), Some(url));
    }

    #[test]
    fn all_five_markup_characters_are_escaped() {
        let xml = Response::new()
            .say(Say::new(r#"&<>"'"#).voice(r#"&<>"'"#))
            .to_xml();
        assert!(
            xml.contains(r#"voice="&amp;&lt;&gt;&quot;&apos;""#),
            "{xml}"
        );
        assert!(xml.contains(">&amp;&lt;&gt;&quot;&apos;</Say>"), "{xml}");
    }

    #[test]
    fn whitespace_survives_and_forbidden_characters_are_dropped() {
        let root = parse(
            &Response::new()
                .say(Say::new("a\tb\nc\r\nd\u{0}e\u{1b}f\u{FFFF}g").language("x\ty\nz\r"))
                .to_xml(),
        );
        let say = &root.children[0];
        assert_eq!(say.text, "a\tb\nc\r\ndefg");
        assert_eq!(say.attr("language"), Some("x\ty\nz\r"));
    }

    #[test]
    fn dial_number_with_all_attributes() {
        let root = parse(
            &Response::new()
                .dial(
                    Dial::new()
                        .caller_id("+815012345678")
                        .time_limit(600)
                        .timeout(30)
                        .action("https://a.example/dial-done?session=KC1")
                        .method(Method::Post)
                        .answer_on_bridge(true)
                        .ring_tone("jp")
                        .number(
                            Number::new("+819012345678")
                                .status_callback("https://a.example/twilio/voice/status")
                                .status_callback_event(&[
                                    "initiated",
                                    "ringing",
                                    "answered",
                                    "completed",
                                ]),
                        ),
                )
                .to_xml(),
        );
        let dial = &root.children[0];
        assert_eq!(dial.name, "Dial");
        assert_eq!(
            dial.attrs,
            [
                ("callerId", "+815012345678"),
                ("timeLimit", "600"),
                ("timeout", "30"),
                ("action", "https://a.example/dial-done?session=KC1"),
                ("method", "POST"),
                ("answerOnBridge", "true"),
                ("ringTone", "jp"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(dial.text, "");
        assert_eq!(dial.names(), ["Number"]);
        let number = &dial.children[0];
        assert_eq!(number.text, "+819012345678");
        assert_eq!(
            number.attrs,
            [
                ("statusCallback", "https://a.example/twilio/voice/status"),
                (
                    "statusCallbackEvent",
                    "initiated ringing answered completed"
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn dial_conference_with_all_attributes() {
        let root = parse(
            &Response::new()
                .dial(
                    Dial::new().caller_id("+815012345678").conference(
                        Conference::new("KC0123456789abcdef")
                            .beep(false)
                            .start_conference_on_enter(true)
                            .end_conference_on_exit(false)
                            .wait_url("https://a.example/hold.xml")
                            .wait_method(Method::Get)
                            .status_callback("https://a.example/twilio/voice/conference-status")
                            .status_callback_event(&["start", "end", "join", "leave"])
                            .participant_label("KP1"),
                    ),
                )
                .to_xml(),
        );
        let dial = &root.children[0];
        assert_eq!(
            dial.attrs,
            [("callerId".to_owned(), "+815012345678".to_owned())]
        );
        assert_eq!(dial.names(), ["Conference"]);
        let conference = &dial.children[0];
        assert_eq!(conference.text, "KC0123456789abcdef");
        assert_eq!(
            conference.attrs,
            [
                ("beep", "false"),
                ("startConferenceOnEnter", "true"),
                ("endConferenceOnExit", "false"),
                ("waitUrl", "https://a.example/hold.xml"),
                ("waitMethod", "GET"),
                (
                    "statusCallback",
                    "https://a.example/twilio/voice/conference-status"
                ),
                ("statusCallbackEvent", "start end join leave"),
                ("participantLabel", "KP1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn unset_attributes_are_omitted() {
        let root = parse(
            &Response::new()
                .say(Say::new("a"))
                .dial(Dial::new().number(Number::new("+819012345678")))
                .dial(Dial::new().conference(Conference::new("room")))
                .gather(Gather::new().say(Say::new("b")))
                .to_xml(),
        );
        fn assert_bare(node: &Node) {
            assert!(node.attrs.is_empty(), "{} has {:?}", node.name, node.attrs);
            node.children.iter().for_each(assert_bare);
        }
        root.children.iter().for_each(assert_bare);
    }

    #[test]
    fn booleans_are_written_as_true_and_false() {
        let root = parse(
            &Response::new()
                .dial(
                    Dial::new()
                        .answer_on_bridge(false)
                        .conference(Conference::new("r").beep(true)),
                )
                .to_xml(),
        );
        let dial = &root.children[0];
        assert_eq!(dial.attr("answerOnBridge"), Some("false"));
        assert_eq!(dial.children[0].attr("beep"), Some("true"));
    }

    #[test]
    fn dial_attributes_may_be_set_after_the_noun() {
        let root = parse(
            &Response::new()
                .dial(
                    Dial::new()
                        .number(Number::new("+819012345678"))
                        .caller_id("+815012345678")
                        .time_limit(180),
                )
                .to_xml(),
        );
        let dial = &root.children[0];
        assert_eq!(dial.attr("callerId"), Some("+815012345678"));
        assert_eq!(dial.attr("timeLimit"), Some("180"));
        assert_eq!(dial.children.len(), 1);
    }

    #[test]
    fn gather_with_nested_prompts_in_order() {
        let prompt = "通話終了まで残り3分です。延長する場合は1を押してください。";
        let root = parse(
            &Response::new()
                .gather(
                    Gather::new()
                        .input("dtmf")
                        .num_digits(1)
                        .timeout(8)
                        .action("https://a.example/twilio/voice/extension/answer?session=KC1&leg=a")
                        .method(Method::Post)
                        .action_on_empty_result(true)
                        .say(Say::new(prompt).language("ja-JP").voice("Polly.Mizuki"))
                        .say(Say::new("お願いします。")),
                )
                .say(Say::new("延長しませんでした。").language("ja-JP"))
                .to_xml(),
        );
        assert_eq!(root.names(), ["Gather", "Say"]);
        let gather = &root.children[0];
        assert_eq!(
            gather.attrs,
            [
                ("input", "dtmf"),
                ("numDigits", "1"),
                ("timeout", "8"),
                (
                    "action",
                    "https://a.example/twilio/voice/extension/answer?session=KC1&leg=a"
                ),
                ("method", "POST"),
                ("actionOnEmptyResult", "true"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(gather.names(), ["Say", "Say"]);
        assert_eq!(gather.children[0].text, prompt);
        assert_eq!(gather.children[0].attr("voice"), Some("Polly.Mizuki"));
        assert_eq!(gather.children[1].text, "お願いします。");
    }

    #[test]
    fn gather_without_prompts_is_an_empty_element() {
        let xml = Response::new().gather(Gather::new().num_digits(1)).to_xml();
        assert!(xml.contains(r#"<Gather numDigits="1"/>"#), "{xml}");
        assert!(parse(&xml).children[0].children.is_empty());
    }

    #[test]
    fn empty_texts_still_make_valid_xml() {
        let root = parse(
            &Response::new()
                .say(Say::new(""))
                .dial(Dial::new().number(Number::new("")))
                .redirect("")
                .to_xml(),
        );
        assert_eq!(root.names(), ["Say", "Dial", "Redirect"]);
        assert!(root.children.iter().all(|c| c.text.is_empty()));
    }

    #[test]
    fn content_type_is_xml_in_utf8() {
        assert_eq!(CONTENT_TYPE, "text/xml; charset=utf-8");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// What survives escaping: the characters XML 1.0 allows.
        fn allowed(s: &str) -> String {
            s.chars()
                .filter(|c| {
                    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
                })
                .collect()
        }

        /// Any string, and strings dense in markup characters and controls.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[<>&\"' \t\r\n\u{0}-\u{1f}a-z\u{FFFE}\u{FFFF}]{0,40}"
            ]
        }

        proptest! {
            #[test]
            fn escaped_text_and_attributes_read_back_as_written(
                said in text(), voice in text(), url in text(), caller in text()
            ) {
                let xml = Response::new()
                    .say(Say::new(said.clone()).voice(voice.clone()))
                    .redirect(url.clone())
                    .dial(Dial::new().caller_id(caller.clone()).number(Number::new(caller.clone())))
                    .to_xml();
                let root = parse(&xml);
                prop_assert_eq!(root.names(), ["Say", "Redirect", "Dial"]);
                prop_assert_eq!(&root.children[0].text, &allowed(&said));
                prop_assert_eq!(root.children[0].attr("voice").map(str::to_owned), Some(allowed(&voice)));
                prop_assert_eq!(&root.children[1].text, &allowed(&url));
                prop_assert_eq!(root.children[2].attr("callerId").map(str::to_owned), Some(allowed(&caller)));
                prop_assert_eq!(&root.children[2].children[0].text, &allowed(&caller));
            }
        }
    }
}
