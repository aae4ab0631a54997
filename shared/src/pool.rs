//! Choosing proxy numbers for a new session (I1: a participant is in at most one open
//! session per proxy number). The choice is pure; the transaction in `store` makes it
//! race-free: two creates that pick the same free slot cannot both commit.

use std::collections::HashSet;

use crate::model::ProxyNumber;
use crate::phone::PhoneNumber;

/// What each participant needs: their number and, when the request names one, the proxy.
#[derive(Debug, Clone)]
pub struct Need<'a> {
    pub identifier: &'a PhoneNumber,
    pub requested: Option<&'a PhoneNumber>,
    /// Proxy numbers this participant already uses in open sessions.
    pub taken: &'a HashSet<PhoneNumber>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortage {
    /// Nothing in the pool is free for this participant.
    NoneFree { participant: PhoneNumber },
    /// The requested number is not in the pool.
    NotInPool { number: PhoneNumber },
    /// The requested number is already used by this participant in an open session.
    Taken {
        number: PhoneNumber,
        participant: PhoneNumber,
    },
}

/// Picks one proxy number per participant. Prefers a single number free for everyone (so
/// both parties save one contact), then the least-used unreserved number for each; ties are
/// broken by `tie_break` (a random rotation, so concurrent creates spread over equal numbers).
pub fn choose(
    pool: &[ProxyNumber],
    needs: &[Need<'_>],
    tie_break: usize,
) -> Result<Vec<PhoneNumber>, Shortage> {
    let in_pool = |n: &PhoneNumber| pool.iter().any(|p| &p.phone_number == n);
    for need in needs {
        if let Some(r) = need.requested {
            if !in_pool(r) {
                return Err(Shortage::NotInPool { number: r.clone() });
            }
            if need.taken.contains(r) {
                return Err(Shortage::Taken {
                    number: r.clone(),
                    participant: need.identifier.clone(),
                });
            }
        }
    }

    let mut candidates: Vec<&ProxyNumber> = pool.iter().filter(|p| !p.is_reserved).collect();
    candidates.sort_by(|a, b| (a.in_use, &a.phone_number).cmp(&(b.in_use, &b.phone_number)));
    if !candidates.is_empty() {
        // Rotate within the least-used group only, keeping the preference order intact.
        let least = candidates[0].in_use;
        let group = candidates.iter().take_while(|p| p.in_use == least).count();
        candidates[..group].rotate_left(tie_break % group);
    }
    let free_for = |need: &Need<'_>, p: &ProxyNumber| !need.taken.contains(&p.phone_number);

    let auto: Vec<&Need<'_>> = needs.iter().filter(|n| n.requested.is_none()).collect();
    if let Some(shared) = candidates
        .iter()
        .find(|p| auto.iter().all(|need| free_for(need, p)))
    {
        return Ok(needs
            .iter()
            .map(|need| {
                need.requested
                    .cloned()
                    .unwrap_or_else(|| shared.phone_number.clone())
            })
            .collect());
    }
    needs
        .iter()
        .map(|need| match need.requested {
            Some(r) => Ok(r.clone()),
            None => candidates
                .iter()
                .find(|p| free_for(need, p))
                .map(|p| p.phone_number.clone())
                .ok_or_else(|| Shortage::NoneFree {
                    participant: need.identifier.clone(),
                }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn pool(entries: &[(&str, bool, u64)]) -> Vec<ProxyNumber> {
        entries
            .iter()
            .map(|(n, reserved, in_use)| ProxyNumber {
                phone_number: num(n),
                is_reserved: *reserved,
                in_use: *in_use,
                date_created: 0,
                date_updated: 0,
            })
            .collect()
    }

    const P1: &str = "+815031234567";
    const P2: &str = "+815031234568";
    const P3: &str = "+815031234569";

    #[test]
    fn prefers_one_least_used_number_for_both() {
        let pool = pool(&[(P1, false, 3), (P2, false, 1), (P3, true, 0)]);
        let (a, b) = (num("090-1234-5678"), num("080-9876-5432"));
        let none = HashSet::new();
        let needs = [
            Need {
                identifier: &a,
                requested: None,
                taken: &none,
            },
            Need {
                identifier: &b,
                requested: None,
                taken: &none,
            },
        ];
        assert_eq!(
            choose(&pool, &needs, 0).unwrap(),
            vec![num(P2), num(P2)],
            "reserved P3 is never auto-picked"
        );
    }

    #[test]
    fn never_reuses_a_number_a_participant_already_has() {
        let pool = pool(&[(P1, false, 0), (P2, false, 0)]);
        let (a, b) = (num("090-1234-5678"), num("080-9876-5432"));
        let a_taken = HashSet::from([num(P1)]);
        let b_taken = HashSet::from([num(P2)]);
        let needs = [
            Need {
                identifier: &a,
                requested: None,
                taken: &a_taken,
            },
            Need {
                identifier: &b,
                requested: None,
                taken: &b_taken,
            },
        ];
        // No single number is free for both: each gets one of their own.
        assert_eq!(choose(&pool, &needs, 0).unwrap(), vec![num(P2), num(P1)]);

        let both = HashSet::from([num(P1), num(P2)]);
        let needs = [
            Need {
                identifier: &a,
                requested: None,
                taken: &both,
            },
            Need {
                identifier: &b,
                requested: None,
                taken: &b_taken,
            },
        ];
        assert_eq!(
            choose(&pool, &needs, 0),
            Err(Shortage::NoneFree {
                participant: a.clone()
            })
        );
    }

    #[test]
    fn requested_numbers_are_checked() {
        let pool = pool(&[(P1, true, 0)]);
        let a = num("090-1234-5678");
        let none = HashSet::new();
        let p1 = num(P1);
        let p2 = num(P2);
        let ok = [Need {
            identifier: &a,
            requested: Some(&p1),
            taken: &none,
        }];
        assert_eq!(
            choose(&pool, &ok, 0).unwrap(),
            vec![p1.clone()],
            "reserved numbers can be requested"
        );
        let missing = [Need {
            identifier: &a,
            requested: Some(&p2),
            taken: &none,
        }];
        assert_eq!(
            choose(&pool, &missing, 0),
            Err(Shortage::NotInPool { number: p2.clone() })
        );
        let taken = HashSet::from([p1.clone()]);
        let clash = [Need {
            identifier: &a,
            requested: Some(&p1),
            taken: &taken,
        }];
        assert!(matches!(
            choose(&pool, &clash, 0),
            Err(Shortage::Taken { .. })
        ));
    }

    #[test]
    fn ties_rotate_but_preference_holds() {
        let pool = pool(&[(P1, false, 0), (P2, false, 0), (P3, false, 5)]);
        let a = num("090-1234-5678");
        let none = HashSet::new();
        let needs = [Need {
            identifier: &a,
            requested: None,
            taken: &none,
        }];
        let picks: HashSet<_> = (0..4)
            .map(|t| choose(&pool, &needs, t).unwrap()[0].clone())
            .collect();
        assert_eq!(
            picks,
            HashSet::from([num(P1), num(P2)]),
            "the busier P3 is never preferred"
        );
    }
}
