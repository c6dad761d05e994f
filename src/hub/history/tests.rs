//! What rooms keep, and the replays read from it.

use super::*;
use crate::hub::event::{Body, Delivery, Event};

fn rules(max_messages: usize) -> HistoryRules {
    HistoryRules {
        max_messages,
        ..HistoryRules::off()
    }
}

fn room(name: &str) -> RoomName {
    RoomName::new(name).unwrap()
}

fn say(history: &RoomHistory, text: &str) -> Offset {
    history.log().push(
        history,
        &Name::new("alice").unwrap(),
        &Body::line(text.to_owned()),
    )
}

fn texts(kept: &[Kept]) -> Vec<String> {
    kept.iter()
        .map(|kept| String::from_utf8_lossy(&kept.body.bytes).into_owned())
        .collect()
}

#[test]
fn offsets_are_read_back_as_they_are_written() {
    let offset = Offset {
        epoch: 0x9f0c_4e1a_2b3d_5f60,
        seq: 42,
    };
    assert_eq!(offset.to_string(), "9f0c4e1a2b3d5f60-42");
    assert_eq!("9f0c4e1a2b3d5f60-42".parse::<Offset>(), Ok(offset));
    assert_eq!(
        "1-1".parse::<Offset>().unwrap(),
        Offset { epoch: 1, seq: 1 }
    );
    for bad in [
        "",
        "42",
        "-42",
        "abc-",
        "xyz-1",
        "1-+1",
        "1--1",
        "1-x",
        "10000000000000000-1",
    ] {
        assert!(bad.parse::<Offset>().is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn a_room_keeps_its_last_messages_numbered_in_order() {
    let histories = Histories::new(rules(3));
    let history = histories.for_room(&room("ops")).unwrap();
    let offsets: Vec<Offset> = (1..=5).map(|n| say(&history, &format!("m{n}"))).collect();
    assert!(offsets.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(offsets.iter().all(|o| o.epoch == offsets[0].epoch));
    let page = history.log().page(10, None);
    assert_eq!(texts(&page.kept), ["m3", "m4", "m5"]);
    assert!(!page.more);
    let page = history.log().page(2, None);
    assert_eq!(texts(&page.kept), ["m4", "m5"]);
    assert!(page.more);
    let page = history.log().page(2, Some(page.kept[0].offset));
    assert_eq!(texts(&page.kept), ["m3"]);
    assert!(!page.more);
}

#[test]
fn a_resume_gets_what_came_after_its_offset_or_is_told_of_the_gap() {
    let histories = Histories::new(rules(3));
    let history = histories.for_room(&room("ops")).unwrap();
    let offsets: Vec<Offset> = (1..=5).map(|n| say(&history, &format!("m{n}"))).collect();
    let resume = history.log().since(offsets[2]);
    assert_eq!(texts(&resume.kept), ["m4", "m5"]);
    assert_eq!(resume.gap, None);
    // The one right before the oldest kept: nothing lost.
    let resume = history.log().since(offsets[1]);
    assert_eq!(texts(&resume.kept), ["m3", "m4", "m5"]);
    assert_eq!(resume.gap, None);
    // m2 was dropped: a client that saw only m1 lost it.
    let resume = history.log().since(offsets[0]);
    assert_eq!(texts(&resume.kept), ["m3", "m4", "m5"]);
    assert_eq!(
        resume.gap,
        Some(Gap {
            since: offsets[0],
            from: Some(offsets[2]),
            reason: GapReason::TooOld
        })
    );
    // Up to date: nothing to replay.
    assert!(history.log().since(offsets[4]).kept.is_empty());
    // Another epoch: everything kept, and the gap.
    let elsewhere = Offset {
        epoch: offsets[0].epoch ^ 1,
        seq: 4,
    };
    let resume = history.log().since(elsewhere);
    assert_eq!(texts(&resume.kept), ["m3", "m4", "m5"]);
    assert_eq!(resume.gap.unwrap().reason, GapReason::Epoch);
}

#[test]
fn a_room_keeps_no_more_bytes_than_its_bound() {
    let histories = Histories::new(HistoryRules {
        max_messages: 1000,
        max_bytes: 3 * (KEPT_OVERHEAD + 5 + 100),
        ..HistoryRules::off()
    });
    let history = histories.for_room(&room("ops")).unwrap();
    for n in 0..10 {
        say(&history, &format!("{n}").repeat(100));
    }
    assert_eq!(history.log().kept.len(), 3);
    assert_eq!(histories.bytes(), 3 * (KEPT_OVERHEAD + 5 + 100));
}

#[test]
fn rooms_outside_the_patterns_keep_nothing() {
    let histories = Histories::new(HistoryRules {
        rooms: Some(Arc::new(|room: &RoomName| {
            room.as_str().starts_with("dev-")
        })),
        ..rules(10)
    });
    assert!(histories.for_room(&room("dev-1")).is_some());
    assert!(histories.for_room(&room("lobby")).is_none());
    assert!(Histories::new(HistoryRules::off())
        .for_room(&room("dev-1"))
        .is_none());
}

#[test]
fn the_oldest_messages_of_all_rooms_are_evicted_first() {
    let histories = Histories::new(rules(100));
    let a = histories.for_room(&room("a")).unwrap();
    let b = histories.for_room(&room("b")).unwrap();
    say(&a, "a1");
    // Same millisecond or not, the heap takes a's first: insertion
    // order breaks no tie here, times do; make them differ.
    a.log().kept[0].at -= 10;
    say(&b, "b1");
    say(&a, "a2");
    let one = KEPT_OVERHEAD + 2 + 5;
    assert_eq!(histories.evict(1), one);
    assert_eq!(texts(&a.log().page(10, None).kept), ["a2"]);
    assert_eq!(texts(&b.log().page(10, None).kept), ["b1"]);
    assert_eq!(histories.evicted(), 1);
    assert_eq!(histories.evict(usize::MAX), 2 * one);
    assert_eq!(histories.bytes(), 0);
}

#[test]
fn expired_messages_go_and_so_do_empty_histories_of_rooms_gone() {
    let histories = Histories::new(rules(100));
    let history = histories.for_room(&room("ops")).unwrap();
    say(&history, "old");
    history.log().kept[0].at -= 2 * 3600 * 1000;
    say(&history, "new");
    histories.expire();
    assert_eq!(texts(&history.log().page(10, None).kept), ["new"]);
    let epoch = history.log().epoch();
    // The room still holds it: kept, even empty.
    history.log().kept[0].at -= 2 * 3600 * 1000;
    histories.expire();
    assert!(histories.get(&room("ops")).is_some());
    drop(history);
    histories.expire();
    assert!(histories.get(&room("ops")).is_none());
    // A new history of the room is a new epoch.
    let again = histories.for_room(&room("ops")).unwrap();
    assert_ne!(again.log().epoch(), epoch);
}

#[test]
fn new_rules_drop_the_histories_of_rooms_no_longer_kept() {
    let histories = Histories::new(rules(100));
    let history = histories.for_room(&room("ops")).unwrap();
    say(&history, "x");
    histories.set_rules(HistoryRules::off());
    assert_eq!(histories.bytes(), 0);
    assert!(histories.get(&room("ops")).is_none());
}

fn replayed(deliveries: &[Arc<Delivery>]) -> Vec<String> {
    deliveries
        .iter()
        .flat_map(|delivery| delivery.events())
        .filter_map(|event| match event {
            Event::Replayed { kept, .. } => {
                Some(String::from_utf8_lossy(&kept.body.bytes).into_owned())
            }
            Event::HistoryEnd { count, .. } => Some(format!("end {count}")),
            Event::Gap { gap, .. } => Some(format!("gap {}", gap.reason.code())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_replay_read_before_the_lock_gets_what_was_said_meanwhile_too() {
    let histories = Histories::new(rules(100));
    let ops = room("ops");
    let history = histories.for_room(&ops).unwrap();
    let offsets: Vec<Offset> = (1..=3).map(|n| say(&history, &format!("m{n}"))).collect();
    let since = Prepared::read(&ops, Some(&history), Replay::Since(offsets[0]));
    let last = Prepared::read(&ops, Some(&history), Replay::Last(2));
    // Said between the read and the client's entry into the room.
    say(&history, "m4");
    let log = history.log();
    let since = since.finish(Some((&history, &log)));
    assert_eq!(replayed(&since), ["m2", "m3", "m4"]);
    let last = last.finish(Some((&history, &log)));
    assert_eq!(replayed(&last), ["m2", "m3", "m4", "end 3"]);
}

#[test]
fn a_replay_of_a_history_replaced_meanwhile_is_read_again() {
    let histories = Histories::new(rules(100));
    let ops = room("ops");
    let old = histories.for_room(&ops).unwrap();
    let first = say(&old, "old");
    let prepared = Prepared::read(&ops, Some(&old), Replay::Since(first));
    // A reload dropped and remade the room's history: a new epoch.
    histories.set_rules(HistoryRules::off());
    histories.set_rules(rules(100));
    let new = histories.for_room(&ops).unwrap();
    say(&new, "new");
    let log = new.log();
    assert_eq!(
        replayed(&prepared.finish(Some((&new, &log)))),
        ["gap epoch", "new"]
    );
    // A room that keeps none: a resuming client is told so.
    let none = Prepared::read(&ops, None, Replay::Since(first));
    assert_eq!(replayed(&none.finish(None)), ["gap not_kept"]);
    let none = Prepared::read(&ops, None, Replay::Last(5));
    assert!(replayed(&none.finish(None)).is_empty());
}

fn kept(epoch: u64, seq: u64, text: &str) -> Kept {
    Kept {
        offset: Offset { epoch, seq },
        at: unix_millis(SystemTime::now()),
        from: Name::new("alice").unwrap(),
        body: Body::line(text.to_owned()),
    }
}

fn saving_hub(keep: usize) -> Hub {
    let hub = Hub::new(crate::hub::tests::settings());
    hub.set_history_rules(rules(keep));
    hub
}

#[test]
fn a_restored_history_goes_on_at_its_epoch_and_position_within_the_rules() {
    let hub = saving_hub(2);
    hub.restore_history(vec![
        Restored {
            room: room("ops"),
            epoch: 7,
            next: 4,
            kept: vec![kept(7, 1, "a"), kept(7, 2, "b"), kept(7, 3, "c")],
        },
        Restored {
            room: room("dev-1"),
            epoch: 9,
            next: 2,
            kept: vec![kept(9, 1, "x")],
        },
    ]);
    let ops = hub.shared.histories.get(&room("ops")).unwrap();
    // Two kept, as the rules say now; the next message goes on at 7-4.
    assert_eq!(texts(&ops.log().page(10, None).kept), ["b", "c"]);
    assert_eq!(say(&ops, "d"), Offset { epoch: 7, seq: 4 });
    // Two in ops, one in dev-1.
    assert_eq!(hub.history_bytes(), 3 * kept(7, 1, "b").weight());
    // The saver hears of both changes to ops (trimmed, then said).
    let mut unsaved = hub.unsaved_history(&HashMap::from([(
        room("ops"),
        Saved {
            epoch: 7,
            through: 3,
        },
    )]));
    assert_eq!(unsaved.len(), 1);
    let Unsaved::Kept {
        epoch,
        next,
        first,
        kept: new,
        ..
    } = unsaved.remove(0)
    else {
        panic!("ops keeps a history");
    };
    assert_eq!((epoch, next, first), (7, 5, 3));
    assert_eq!(texts(&new), ["d"], "only what came after what was saved");
}

#[test]
fn a_saver_hears_of_each_room_changed_once_and_of_rooms_forgotten() {
    let hub = saving_hub(10);
    hub.restore_history(Vec::new());
    assert!(hub.unsaved_history(&HashMap::new()).is_empty());
    let ops = hub.shared.histories.for_room(&room("ops")).unwrap();
    say(&ops, "one");
    say(&ops, "two");
    assert_eq!(hub.unsaved_rooms(), 1);
    assert!(hub.wait_for_unsaved_history(Duration::ZERO));
    let unsaved = hub.unsaved_history(&HashMap::new());
    let [Unsaved::Kept { kept, first, .. }] = unsaved.as_slice() else {
        panic!("one room changed: {unsaved:?}");
    };
    assert_eq!((texts(kept), *first), (vec!["one".into(), "two".into()], 1));
    assert_eq!(hub.unsaved_rooms(), 0);
    assert!(!hub.wait_for_unsaved_history(Duration::ZERO));
    // Nobody is in it and it keeps nothing once its messages expire.
    drop(ops);
    hub.set_history_rules(HistoryRules {
        rooms: Some(Arc::new(|room: &RoomName| room.as_str() != "ops")),
        ..rules(10)
    });
    assert_eq!(
        hub.unsaved_history(&HashMap::new()),
        [Unsaved::Forgotten(room("ops"))]
    );
}

#[test]
fn without_a_saver_nothing_is_noted() {
    let hub = saving_hub(10);
    let ops = hub.shared.histories.for_room(&room("ops")).unwrap();
    say(&ops, "one");
    assert_eq!(hub.unsaved_rooms(), 0);
}
