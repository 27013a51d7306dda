/*
 * lease.pml: a model of reconciler's lease and wave protocol, for spin.
 *
 * What it mirrors (docs/model.md maps each part to the code):
 *   - lease slots refs/reconciler/leases/<app>/<slot>: a holder and a token
 *     (the commit id); every write is a compare-and-swap on the token and
 *     makes a new one;
 *   - expiry as each observer sees it: a held lease that observer j has seen
 *     unchanged for TTL ticks of j's own clock (counted from when j first
 *     read that token) may be taken over by j, which first records the old
 *     holder's failure in the rollout record;
 *   - the holder's validity, counted from just before it sent its last
 *     acknowledged write: it begins the bounded step (switch + health
 *     check, at most STEP ticks) only with at least STEP ticks of validity
 *     left, and otherwise gives the slot up;
 *   - writes that are slow (ticks pass between sending, landing and the
 *     answer), lost before they land, or land with their answer lost;
 *   - agents that crash anywhere (losing everything in memory: validity,
 *     what they observed) and restart, then renew a lease they still hold;
 *   - waves: the nodes of wave 1 start once an agent has recorded wave 0
 *     done (every node of wave 0 has a verdict).
 *
 * Properties:
 *   safety    (assertions, checked in every reachable state): never more
 *             than S nodes acting; never two nodes acting under one slot;
 *   liveness  (ltl ends, under weak fairness): every node gets a verdict,
 *             so the rollout ends, whatever the (bounded) faults.
 *
 * Time is discrete: the Clock process ticks every timer at once. Timers are
 * relative counters that saturate, so the state space is finite.
 */

#define N      4   /* nodes; nodes 0,1 are wave 0 and 2,3 wave 1 */
#define S      2   /* lease slots: batchSize */
#ifndef TTL
#define TTL    2   /* lease TTL, in ticks */
#endif
#define STEP   1   /* bound on the step a holder takes under its lease */
#ifndef FAULTS
#define FAULTS 2   /* crashes, lost or slow writes, lost answers: at most this many per run */
#endif
#define FREE   255
#define NONE   0
#define DONE   1
#define FAILED 2

/* The shared state (the Git server or etcd). */
byte holder[S] = FREE;   /* FREE or the holding node */
/* Tokens. Every write makes a new token, and the protocol only ever asks
 * whether a token is still the slot's current one. So instead of token
 * values the model keeps, per node and slot, whether the token the node last
 * read (or wrote and was told about) is still current: a write clears every
 * node's bit for that slot. This is exact, and keeps the state space finite. */
bit cur[N*S];            /* cur[j*S+s]: j knows slot s's current token (it read the slot, or was
                          * told its own write landed, since the slot last changed); a read of a
                          * slot j does not know restarts j's count of how long it is unchanged */
byte verdict[N];         /* the rollout record: NONE, DONE or FAILED per node */
bool wave0done = false;  /* the record's wave_done 0 */

/* Each node's memory (lost in a crash). */
/* Expiry. Observer j may take a slot over once it has seen the slot unchanged
 * for TTL on its own clock, counted from when j first read its current token.
 * No observer can read a token before it lands, so every observer's count is
 * at most the time since the slot's last write landed: the model keeps that
 * one count per slot and lets any observer take over once it reaches TTL.
 * That allows every takeover the real observers can make (and some earlier
 * ones), so safety shown here holds for them; it also covers an observer
 * that restarted and counts again from zero. */
byte age[S];             /* ticks since slot s last changed (saturates at TTL) */
byte valid[N];           /* validity left of j's last acknowledged write */
byte pend[N];            /* validity timer of j's write in flight */
byte acting[N] = FREE;   /* FREE, or the slot j acts under */
byte left[N];            /* ticks left of j's step */

byte faults = 0;
/* With -DFAST (the liveness check only): a node that is not faulty is fast
 * next to TTL, so no tick passes between it being told its lease write
 * landed and its check of the validity left. A faulty, slow round trip still
 * lets ticks pass anywhere. Without some such bound a node could be too slow
 * for ever, give its slot up each time, and the rollout would never end,
 * which no protocol that must stay safe without timing assumptions can
 * prevent. Safety is checked without it: it must not depend on speed. */
bit fast[N];
bool crashed[N];         /* set by Crasher; the node notices, forgets and restarts */

#define nacting ((acting[0] != FREE) + (acting[1] != FREE) + (acting[2] != FREE) + (acting[3] != FREE))
#define twoOnOneSlot \
	((acting[0] != FREE && (acting[0] == acting[1] || acting[0] == acting[2] || acting[0] == acting[3])) || \
	 (acting[1] != FREE && (acting[1] == acting[2] || acting[1] == acting[3])) || \
	 (acting[2] != FREE && acting[2] == acting[3]))
#define ended (verdict[0] != NONE && verdict[1] != NONE && verdict[2] != NONE && verdict[3] != NONE)

ltl ends { <> ended }

/* Safety. Only a node beginning its step can break it, so it is asserted
 * there (which is every state where it could first fail), rather than by a
 * monitor process that would defeat spin's partial-order reduction. */
#define safe (nacting <= S && !twoOnOneSlot)

/* The point of no return: a holder begins its step only with validity left
 * for the whole of it. */
#ifdef MUTANT_NO_VALIDITY_CHECK
#define mayBegin true
#else
#define mayBegin (valid[i] >= STEP)
#endif

/* One tick of every clock. Clocks run at one rate; skew does not matter
 * since nothing compares times taken on two nodes. */
active proctype Clock() {
	byte j;
	do
	:: d_step {
#ifdef FAST
		!(fast[0] || fast[1] || fast[2] || fast[3]);
#endif
		j = 0;
		do
		:: j < N ->
			if :: valid[j] > 0 -> valid[j]-- :: else fi;
			if :: pend[j] > 0 -> pend[j]-- :: else fi;
			if
			:: left[j] > 0 -> left[j]--;
				if :: left[j] == 0 -> acting[j] = FREE :: else fi
			:: else
			fi;
			j++
		:: else -> break
		od;
		j = 0;
		do
		:: j < S ->
			if :: age[j] < TTL && holder[j] != FREE -> age[j]++ :: else fi;
			j++
		:: else -> break
		od;
		j = 0
	}
	od
}

/* read: observer i reads slot s; a token it has not seen restarts its count. */
inline read(rs) {
	cur[i*S+rs] = 1
}

/* land: the server applies node i's compare-and-swap of slot ls, from the
 * token i holds for it, to holder lwho: a new token nobody has read yet. */
inline land(ls, lwho) {
	if
	:: cur[i*S+ls] ->
		holder[ls] = lwho; landed = true;
		for (k : 0 .. N-1) { cur[k*S+ls] = 0 }
		k = 0; age[ls] = 0
	:: !cur[i*S+ls] -> landed = false
	fi
}

/* write: node i sends a CAS of slot ws to holder wwho; acked says
 * whether it learnt that the write landed. The validity timer starts before sending. */
inline write(ws, wwho) {
	if
	:: atomic { faults < FAULTS -> faults++ };  /* a faulty round trip */
		pend[i] = TTL;
		if
		:: skip;                                            /* lost before landing */
			acked = false
		:: atomic { land(ws, wwho) };            /* landed, answer lost */
			acked = false
		:: atomic { land(ws, wwho) };            /* slow: ticks pass around it */
#ifdef MUTANT_VALIDITY_FROM_ANSWER
			atomic { acked = landed; if :: acked -> valid[i] = TTL; cur[i*S+ws] = 1 :: !acked -> skip fi }
#else
			atomic { acked = landed; if :: acked -> valid[i] = pend[i]; cur[i*S+ws] = 1 :: !acked -> skip fi }
#endif
		fi
	:: atomic {                                            /* a round trip within a tick */
		pend[i] = TTL; land(ws, wwho); acked = landed;
		if :: acked -> valid[i] = pend[i]; cur[i*S+ws] = 1; fast[i] = (wwho == i) :: !acked -> skip fi
	}
	fi
}

proctype Node(byte i) {
	byte s, t, k;
	bool landed, acked, go;
restart:
	atomic { s = 0; t = 0; k = 0; landed = false; acked = false; go = false }
	{
	do
	:: verdict[i] != NONE ->
		/* decided: nothing this node knows matters any more */
		atomic { valid[i] = 0; pend[i] = 0; for (k : 0 .. S-1) { cur[i*S+k] = 0 } k = 0; s = 0 }
		break
	:: verdict[i] == NONE && (i < 2 || wave0done || (verdict[0] != NONE && verdict[1] != NONE)) ->
		atomic {
			/* bookkeeping any agent does: wave 0 is done once each of its nodes has a verdict */
			if :: verdict[0] != NONE && verdict[1] != NONE -> wave0done = true :: else fi;
			/* it reads every slot, then picks one: a lease it holds (a
			 * restarted holder renews it at once), else the lowest free
			 * slot, else the lowest expired one (as freeSlot does) */
			read(0); read(1);
			if
			:: holder[0] == i -> s = 0
			:: holder[0] != i && holder[1] == i -> s = 1
			:: holder[0] != i && holder[1] != i && holder[0] == FREE -> s = 0
			:: holder[0] != i && holder[1] != i && holder[0] != FREE && holder[1] == FREE -> s = 1
			:: holder[0] != i && holder[1] != i && holder[0] != FREE && holder[1] != FREE ->
				if :: age[0] >= TTL -> s = 0 :: else -> s = 1 fi
			fi;
			t = holder[s];
			/* it writes only to s: what it read of the other slot is moot */
			cur[i*S + 1 - s] = 0;
			if
			:: t == FREE || t == i -> go = true
			:: t != FREE && t != i && age[s] >= TTL ->
				/* expired for this observer: record the holder failed (sticky), then take over */
				if :: verdict[t] == NONE -> verdict[t] = FAILED :: else fi;
				go = true
			:: else -> go = false; cur[i*S+s] = 0; s = 0   /* held, not expired: look again later */
			fi;
			t = 0
		};
		if
		:: go ->
			go = false;
#ifdef MUTANT_ADOPT_WITHOUT_RENEWING
			/* a restarted holder trusts the lease it finds, without a write */
			if
			:: atomic { holder[s] == i && valid[i] == 0 -> acked = true; valid[i] = TTL }
			:: else -> write(s, i)
			fi;
#else
			write(s, i);
#endif
			if
			:: acked ->
				/* point of no return: begin only inside the validity */
				if
				:: atomic { verdict[i] == NONE && mayBegin -> acting[i] = s; left[i] = STEP; acked = false; fast[i] = 0;
					assert(safe); assert(i < 2 || wave0done) }
					atomic { acting[i] == FREE -> if :: verdict[i] == NONE -> verdict[i] = DONE :: else fi }
				:: atomic { !(verdict[i] == NONE && mayBegin) -> acked = false; fast[i] = 0 }   /* too little validity: give up */
				fi;
				write(s, FREE);     /* release */
				atomic { valid[i] = 0; pend[i] = 0; landed = false; acked = false; cur[i*S+s] = 0; s = 0 }
			:: else -> atomic { pend[i] = 0; landed = false; cur[i*S+s] = 0; s = 0 }
			fi
		:: else
		fi
	od
	} unless { atomic { crashed[i] -> crashed[i] = false }; goto restart }
}

/* Crashes: an agent dies anywhere, forgets everything, and starts again. */
active proctype Crasher() {
	byte i, j;
	do
	:: atomic {
		faults < FAULTS ->
		faults++;
		if :: i = 0 :: i = 1 :: i = 2 :: i = 3 fi;
		/* its step dies with it, and so does all it knew */
		acting[i] = FREE; left[i] = 0; valid[i] = 0; pend[i] = 0; fast[i] = 0;
		j = 0;
		do :: j < S -> cur[i*S+j] = 0; j++ :: else -> break od;
		j = 0;
		crashed[i] = true
	}
	:: atomic { faults >= FAULTS -> break }
	od
}

init {
	atomic { run Node(0); run Node(1); run Node(2); run Node(3) }
}
