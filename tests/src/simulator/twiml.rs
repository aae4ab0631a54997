//! A TwiML parser for the verbs Tsunagu uses. Anything it does not understand is an
//! error, which the simulator reports as an application error, as Twilio would: a test
//! should fail loudly on TwiML that real Twilio would reject.

use std::time::Duration;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// How Twilio requests a URL named in TwiML or in the REST API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    /// Twilio accepts the method case-insensitively.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            _ => Err(format!("unsupported method {value:?}")),
        }
    }
}

/// Progress events a call leg can report to its `statusCallback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl ProgressEvent {
    /// Parses a space-separated (or repeated) `statusCallbackEvent` value; unknown
    /// names are an error, as Twilio rejects them.
    pub fn parse_list(values: &[&str]) -> Result<Vec<Self>, String> {
        let mut events = Vec::new();
        for name in values.iter().flat_map(|v| v.split_whitespace()) {
            events.push(match name {
                "initiated" => Self::Initiated,
                "ringing" => Self::Ringing,
                "answered" => Self::Answered,
                "completed" => Self::Completed,
                other => return Err(format!("unknown statusCallbackEvent {other:?}")),
            });
        }
        Ok(events)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verb {
    Say {
        text: String,
        language: Option<String>,
        voice: Option<String>,
        /// 0 means "until interrupted", as in Twilio.
        loops: u32,
    },
    Play {
        url: String,
        loops: u32,
    },
    Pause {
        length: Duration,
    },
    Hangup,
    Reject {
        busy: bool,
    },
    Redirect {
        url: String,
        method: HttpMethod,
    },
    Gather(Gather),
    Dial(Dial),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gather {
    pub num_digits: Option<usize>,
    pub timeout: Duration,
    pub finish_on_key: Option<char>,
    pub action: Option<String>,
    pub method: HttpMethod,
    pub action_on_empty_result: bool,
    /// Nested Say / Play / Pause.
    pub prompt: Vec<Verb>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dial {
    pub caller_id: Option<String>,
    pub time_limit: Duration,
    pub timeout: Duration,
    pub action: Option<String>,
    pub method: HttpMethod,
    pub answer_on_bridge: bool,
    /// `record` (and its status callback), if the Dial records.
    pub record: Option<RecordingConfig>,
    pub targets: Vec<DialTarget>,
}

/// `record`, `recordingStatusCallback`, `recordingStatusCallbackMethod` and
/// `recordingStatusCallbackEvent` of a `<Dial>` or a `<Conference>`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingConfig {
    /// Two channels, one per party (`…-dual`); a conference's recording is mono.
    pub dual: bool,
    pub status_callback: Option<String>,
    pub method: HttpMethod,
    /// `in-progress`, `completed`, `absent`; Twilio's default is `completed`.
    pub events: Vec<String>,
}

impl RecordingConfig {
    /// Whether Twilio posts the `completed` callback.
    pub fn posts_completed(&self) -> bool {
        self.status_callback.is_some() && self.events.iter().any(|e| e == "completed")
    }

    /// TwiML `<Dial>` "record" (https://www.twilio.com/docs/voice/twiml/dial#record):
    /// `do-not-record` (default), `record-from-answer`, `record-from-ringing`, and their
    /// `-dual` forms; `<Conference>` "record"
    /// (https://www.twilio.com/docs/voice/twiml/conference#record): `do-not-record` or
    /// `record-from-start`. Anything else is refused, as Twilio does.
    fn parse(el: &Element, allowed: &[&str]) -> Result<Option<Self>, String> {
        let Some(mode) = el.attr("record").map(str::trim) else {
            return Ok(None);
        };
        if mode == "do-not-record" {
            return Ok(None);
        }
        if !allowed.contains(&mode) {
            return Err(format!(
                "<{}> record={mode:?} is not one of {allowed:?}",
                el.name
            ));
        }
        let events = match el.attr("recordingStatusCallbackEvent") {
            None => vec!["completed".to_owned()],
            Some(v) => v.split_whitespace().map(str::to_owned).collect(),
        };
        for e in &events {
            if !["in-progress", "completed", "absent"].contains(&e.as_str()) {
                return Err(format!(
                    "<{}> recordingStatusCallbackEvent {e:?} is unknown",
                    el.name
                ));
            }
        }
        Ok(Some(Self {
            dual: mode.ends_with("-dual"),
            status_callback: el.non_empty_attr("recordingStatusCallback"),
            method: el.method("recordingStatusCallbackMethod")?,
            events,
        }))
    }
}

/// What a `<Dial>` connects to.
#[derive(Clone, Debug, PartialEq)]
pub enum DialTarget {
    Number(NumberNoun),
    Conference(ConferenceNoun),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NumberNoun {
    pub number: String,
    /// TwiML run on the called party's end once they answer, before the bridge.
    pub url: Option<String>,
    pub url_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<ProgressEvent>,
    pub status_callback_method: HttpMethod,
}

/// `<Conference>`: a named room of the account.
#[derive(Clone, Debug, PartialEq)]
pub struct ConferenceNoun {
    pub room: String,
    /// `true`, `false`, `onEnter` or `onExit` (recorded, not played).
    pub beep: String,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// What a participant hears until the conference starts.
    pub wait: WaitAudio,
    pub wait_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<ConferenceEvent>,
    pub status_callback_method: HttpMethod,
    pub participant_label: Option<String>,
    pub max_participants: u32,
    pub muted: bool,
    pub record: Option<RecordingConfig>,
}

/// `<Conference waitUrl>`: what a participant hears while the conference has not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitAudio {
    /// No `waitUrl`: Twilio's default classical playlist (never fetched by the simulator).
    Default,
    /// `waitUrl=""`: silence.
    Silence,
    /// TwiML (Say, Play, Pause, Redirect) or audio, requested with `waitMethod`.
    Url(String),
}

/// The short names `<Conference statusCallbackEvent>` takes. The callbacks Twilio
/// posts use long names (`start` → `conference-start`, `hold` → `participant-hold`
/// and `participant-unhold`, …): see [`ConferenceEvent::of_callback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConferenceEvent {
    Start,
    End,
    Join,
    Leave,
    Mute,
    Hold,
    Modify,
    Speaker,
    Announcement,
}

impl ConferenceEvent {
    /// Parses space-separated (or repeated) short names; anything else is an error,
    /// long names included (`participant-join` is what Twilio posts, not what it takes).
    pub fn parse_list(values: &[&str]) -> Result<Vec<Self>, String> {
        let mut events = Vec::new();
        for name in values.iter().flat_map(|v| v.split_whitespace()) {
            events.push(match name {
                "start" => Self::Start,
                "end" => Self::End,
                "join" => Self::Join,
                "leave" => Self::Leave,
                "mute" => Self::Mute,
                "hold" => Self::Hold,
                "modify" => Self::Modify,
                "speaker" => Self::Speaker,
                "announcement" => Self::Announcement,
                other => {
                    return Err(format!(
                        "unknown <Conference> statusCallbackEvent {other:?} (short names: start end join leave mute hold modify speaker announcement)"
                    ));
                }
            });
        }
        Ok(events)
    }

    /// The subscription that makes Twilio post the callback named `long_name`.
    pub fn of_callback(long_name: &str) -> Option<Self> {
        Some(match long_name {
            "conference-start" => Self::Start,
            "conference-end" => Self::End,
            "participant-join" => Self::Join,
            "participant-leave" => Self::Leave,
            "participant-mute" | "participant-unmute" => Self::Mute,
            "participant-hold" | "participant-unhold" => Self::Hold,
            "participant-modified" => Self::Modify,
            "participant-speech-start" | "participant-speech-stop" => Self::Speaker,
            "announcement-end" | "announcement-failed" => Self::Announcement,
            _ => return None,
        })
    }
}

/// A parsed XML element: just enough structure to interpret TwiML.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        self.text.trim()
    }

    fn method(&self, name: &str) -> Result<HttpMethod, String> {
        self.attr(name)
            .map_or(Ok(HttpMethod::Post), HttpMethod::parse)
            .map_err(|e| format!("<{}> {name}: {e}", self.name))
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("<{}> {name}={v:?} is not a number", self.name)),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, String> {
        self.flag_or(name, false)
    }

    fn flag_or(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(format!("<{}> {name}={v:?} is not true/false", self.name)),
        }
    }

    fn secs(&self, name: &str, default: u64) -> Result<Duration, String> {
        self.number(name, default).map(Duration::from_secs)
    }

    fn non_empty_attr(&self, name: &str) -> Option<String> {
        self.attr(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// Parses a TwiML document into its verbs.
pub fn parse(body: &str) -> Result<Vec<Verb>, String> {
    let root = parse_xml(body)?;
    if root.name != "Response" {
        return Err(format!("root element is <{}>, not <Response>", root.name));
    }
    root.children.iter().map(verb).collect()
}

fn verb(el: &Element) -> Result<Verb, String> {
    Ok(match el.name.as_str() {
        "Say" => Verb::Say {
            text: el.text().to_owned(),
            language: el.non_empty_attr("language"),
            voice: el.non_empty_attr("voice"),
            loops: el.number("loop", 1)?,
        },
        "Play" => Verb::Play {
            url: el.text().to_owned(),
            loops: el.number("loop", 1)?,
        },
        "Pause" => Verb::Pause {
            length: el.secs("length", 1)?,
        },
        "Hangup" => Verb::Hangup,
        "Reject" => Verb::Reject {
            busy: el.attr("reason") == Some("busy"),
        },
        "Redirect" => {
            let url = el.text();
            if url.is_empty() {
                return Err("<Redirect> without a URL".into());
            }
            Verb::Redirect {
                url: url.to_owned(),
                method: el.method("method")?,
            }
        }
        "Gather" => Verb::Gather(gather(el)?),
        "Dial" => Verb::Dial(dial(el)?),
        other => return Err(format!("unsupported verb <{other}>")),
    })
}

fn gather(el: &Element) -> Result<Gather, String> {
    if let Some(input) = el.attr("input")
        && !input.split_whitespace().any(|i| i == "dtmf")
    {
        return Err(format!("<Gather input={input:?}>: only dtmf is simulated"));
    }
    let finish_on_key = match el.attr("finishOnKey") {
        None => Some('#'),
        Some(v) => v.chars().next(),
    };
    let num_digits = match el.attr("numDigits") {
        None => None,
        Some(_) => Some(el.number("numDigits", 1usize)?),
    };
    let prompt = el
        .children
        .iter()
        .map(|child| match child.name.as_str() {
            "Say" | "Play" | "Pause" => verb(child),
            other => Err(format!("<{other}> is not allowed inside <Gather>")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Gather {
        num_digits,
        timeout: el.secs("timeout", 5)?,
        finish_on_key,
        action: el.non_empty_attr("action"),
        method: el.method("method")?,
        action_on_empty_result: el.flag("actionOnEmptyResult")?,
        prompt,
    })
}

fn dial(el: &Element) -> Result<Dial, String> {
    let mut targets = Vec::new();
    for child in &el.children {
        match child.name.as_str() {
            "Number" => {
                let events = child.attr("statusCallbackEvent").unwrap_or_default();
                targets.push(DialTarget::Number(NumberNoun {
                    number: child.text().to_owned(),
                    url: child.non_empty_attr("url"),
                    url_method: child.method("method")?,
                    status_callback: child.non_empty_attr("statusCallback"),
                    status_callback_events: ProgressEvent::parse_list(&[events])?,
                    status_callback_method: child.method("statusCallbackMethod")?,
                }));
            }
            "Conference" => targets.push(DialTarget::Conference(conference(child)?)),
            other => return Err(format!("<Dial><{other}> is not supported by the simulator")),
        }
    }
    let conferences = targets
        .iter()
        .filter(|t| matches!(t, DialTarget::Conference(_)))
        .count();
    if conferences > 0 && targets.len() > 1 {
        return Err("<Dial> may hold only one <Conference> and nothing else".into());
    }
    // `<Dial>+8190...</Dial>` is shorthand for a single <Number>.
    if targets.is_empty() && !el.text().is_empty() {
        targets.push(DialTarget::Number(NumberNoun {
            number: el.text().to_owned(),
            url: None,
            url_method: HttpMethod::Post,
            status_callback: None,
            status_callback_events: Vec::new(),
            status_callback_method: HttpMethod::Post,
        }));
    }
    if targets.is_empty() {
        return Err("<Dial> has nothing to dial".into());
    }
    Ok(Dial {
        caller_id: el.non_empty_attr("callerId"),
        time_limit: el.secs("timeLimit", 14_400)?,
        // Twilio rings for at most 600 s.
        timeout: el.secs("timeout", 30)?.min(Duration::from_secs(600)),
        action: el.non_empty_attr("action"),
        method: el.method("method")?,
        answer_on_bridge: el.flag("answerOnBridge")?,
        record: RecordingConfig::parse(
            el,
            &[
                "record-from-answer",
                "record-from-ringing",
                "record-from-answer-dual",
                "record-from-ringing-dual",
            ],
        )?,
        targets,
    })
}

fn conference(el: &Element) -> Result<ConferenceNoun, String> {
    let room = el.text();
    if room.is_empty() {
        return Err("<Conference> without a room name".into());
    }
    let beep = el.attr("beep").unwrap_or("true").trim().to_owned();
    if !["true", "false", "onEnter", "onExit"].contains(&beep.as_str()) {
        return Err(format!(
            "<Conference> beep={beep:?} is not true, false, onEnter or onExit"
        ));
    }
    let max_participants = el.number("maxParticipants", 250u32)?;
    if !(2..=250).contains(&max_participants) {
        return Err(format!(
            "<Conference> maxParticipants={max_participants} is not between 2 and 250"
        ));
    }
    let events = el.attr("statusCallbackEvent").unwrap_or_default();
    Ok(ConferenceNoun {
        room: room.to_owned(),
        beep,
        start_conference_on_enter: el.flag_or("startConferenceOnEnter", true)?,
        end_conference_on_exit: el.flag("endConferenceOnExit")?,
        // Twilio: "waitUrl must be either a well formed URL or the empty string" (13233).
        wait: match el.attr("waitUrl").map(str::trim) {
            None => WaitAudio::Default,
            Some("") => WaitAudio::Silence,
            Some(url) => WaitAudio::Url(url.to_owned()),
        },
        wait_method: el.method("waitMethod")?,
        status_callback: el.non_empty_attr("statusCallback"),
        status_callback_events: ConferenceEvent::parse_list(&[events])?,
        status_callback_method: el.method("statusCallbackMethod")?,
        participant_label: el.non_empty_attr("participantLabel"),
        max_participants,
        muted: el.flag("muted")?,
        record: RecordingConfig::parse(el, &["record-from-start"])?,
    })
}

/// Builds the element tree of a document with a single root element.
fn parse_xml(body: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => stack.push(element(&start, &reader)?),
            Event::Empty(start) => {
                let el = element(&start, &reader)?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let el = stack.pop().ok_or("unexpected end tag")?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(text) => {
                let text = text.xml_content().map_err(|e| e.to_string())?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let text = data.xml_content().map_err(|e| e.to_string())?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(ch) => ch.to_string(),
                    None => {
                        let name = reference.xml_content().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "empty document".to_owned())
}

fn element(start: &BytesStart<'_>, reader: &Reader<&[u8]>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("<{name}>: {e}"))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .decode_and_unescape_value(reader.decoder())
            .map_err(|e| format!("<{name}> {key}: {e}"))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(el) => el.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err("text outside the root element".into()),
    }
    Ok(())
}

/// Resolves a URL from TwiML against the document it came from, as Twilio does for
/// relative `action` and `<Redirect>` URLs.
pub fn resolve_url(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    if url.starts_with('/') {
        return format!("{origin}{url}");
    }
    // Relative to the base document's directory, ignoring its query.
    let path = rest[authority_end..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{origin}{dir}{url}")
}
