"""Syllabus demo data: every demo course gets a syllabus, and held sessions get topics and understanding levels.

- :func:`ensure_syllabus_demo` (in ``ensure_campus``'s transaction): a realistic syllabus of 12 to 14
  topics for each seeded course without one, chosen by the course's subject (its title), with
  estimated times and a few prerequisites. Idempotent: a course that has topics is left alone.
- :func:`ensure_syllabus_history` (``campushub demo``, after the past classes are seeded): each
  held, untagged session of a course with a syllabus is tagged with the next one or two topics in
  syllabus order (as much as fits its length), and every student who attended gets an understanding
  level for the session. Levels come from a fixed per-student ability plus per-class variation (a
  deterministic hash, so reruns agree), so the progress page shows every status: most students
  complete topics, a few need review, strong ones master them, absentees have topics to catch up on.
  Then the courses' progress is refreshed. Idempotent: tagged sessions are left alone.

Concurrency contract: :func:`ensure_syllabus_demo` runs in the caller's transaction;
:func:`ensure_syllabus_history` is one transaction per call on the shared Database.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Sequence

import asyncpg

from .._pool import Database
from ..syllabus import refresh_progress

SEED_ACTOR = "seed:syllabus"

#: (title, unit, minutes, index of a prerequisite or None), by subject.
_SYLLABI: dict[str, list[tuple[str, str, int, int | None]]] = {
    "Algorithms": [
        ("Asymptotic analysis", "Foundations", 90, None),
        ("Recurrences and the master theorem", "Foundations", 90, 0),
        ("Sorting: merge sort and quicksort", "Sorting", 120, 1),
        ("Lower bounds and linear-time sorting", "Sorting", 60, 2),
        ("Heaps and priority queues", "Data structures", 90, None),
        ("Hash tables", "Data structures", 90, None),
        ("Binary search trees", "Data structures", 120, None),
        ("Graph search: BFS and DFS", "Graphs", 120, None),
        ("Shortest paths", "Graphs", 120, 7),
        ("Minimum spanning trees", "Graphs", 90, 7),
        ("Dynamic programming", "Design techniques", 180, 1),
        ("Greedy algorithms", "Design techniques", 90, None),
        ("NP-completeness", "Limits", 120, None),
    ],
    "Databases": [
        ("The relational model", "Foundations", 90, None),
        ("Relational algebra", "Foundations", 90, 0),
        ("SQL: queries", "SQL", 120, 1),
        ("SQL: joins and aggregates", "SQL", 120, 2),
        ("Entity-relationship design", "Design", 90, 0),
        ("Normal forms", "Design", 120, 4),
        ("Indexes and B-trees", "Storage", 120, None),
        ("Query processing", "Storage", 90, 6),
        ("Query optimisation", "Storage", 90, 7),
        ("Transactions and ACID", "Transactions", 90, None),
        ("Concurrency control", "Transactions", 120, 9),
        ("Recovery and logging", "Transactions", 90, 9),
        ("Replication and distribution", "Beyond one server", 90, None),
    ],
    "Operating Systems": [
        ("Processes and system calls", "Processes", 90, None),
        ("Threads", "Processes", 90, 0),
        ("CPU scheduling", "Processes", 120, 0),
        ("Synchronisation: locks", "Concurrency", 120, 1),
        ("Semaphores and monitors", "Concurrency", 90, 3),
        ("Deadlock", "Concurrency", 60, 3),
        ("Address spaces and paging", "Memory", 120, None),
        ("Virtual memory", "Memory", 120, 6),
        ("Page replacement", "Memory", 90, 7),
        ("File systems", "Storage", 120, None),
        ("Journaling", "Storage", 60, 9),
        ("I/O and device drivers", "Storage", 90, None),
        ("Virtualisation", "Beyond", 90, 7),
    ],
    "Networks": [
        ("Layers and protocols", "Foundations", 60, None),
        ("Physical and link layer", "Link", 90, 0),
        ("Ethernet and switching", "Link", 90, 1),
        ("IP addressing", "Network", 120, 0),
        ("Routing algorithms", "Network", 120, 3),
        ("BGP", "Network", 90, 4),
        ("UDP and TCP", "Transport", 120, 3),
        ("Congestion control", "Transport", 120, 6),
        ("DNS", "Application", 60, None),
        ("HTTP and the web", "Application", 90, 6),
        ("TLS", "Security", 90, 6),
        ("Wireless networks", "Link", 90, 1),
    ],
    "Compilers": [
        ("Compiler structure", "Front end", 60, None),
        ("Lexical analysis", "Front end", 120, 0),
        ("Context-free grammars", "Front end", 90, 0),
        ("Top-down parsing", "Front end", 120, 2),
        ("Bottom-up parsing", "Front end", 120, 2),
        ("Abstract syntax trees", "Middle", 60, 3),
        ("Semantic analysis and types", "Middle", 120, 5),
        ("Intermediate representations", "Middle", 90, 5),
        ("Data-flow analysis", "Optimisation", 120, 7),
        ("SSA form", "Optimisation", 90, 7),
        ("Register allocation", "Back end", 120, 7),
        ("Instruction selection", "Back end", 90, 7),
        ("Garbage collection", "Runtime", 90, None),
    ],
    "Linear Algebra": [
        ("Vectors and linear combinations", "Foundations", 90, None),
        ("Matrices and Gaussian elimination", "Foundations", 120, 0),
        ("Matrix multiplication and inverses", "Foundations", 90, 1),
        ("Vector spaces and subspaces", "Spaces", 120, 0),
        ("Linear independence, basis, dimension", "Spaces", 120, 3),
        ("The four fundamental subspaces", "Spaces", 90, 4),
        ("Orthogonality and projections", "Orthogonality", 120, 5),
        ("Least squares", "Orthogonality", 90, 6),
        ("Determinants", "Determinants", 90, 2),
        ("Eigenvalues and eigenvectors", "Eigen", 120, 8),
        ("Diagonalisation", "Eigen", 90, 9),
        ("Symmetric matrices", "Eigen", 90, 9),
        ("Singular value decomposition", "Eigen", 120, 11),
    ],
    "Statistics": [
        ("Describing data", "Descriptive", 60, None),
        ("Probability", "Probability", 120, None),
        ("Random variables", "Probability", 90, 1),
        ("The normal distribution", "Probability", 90, 2),
        ("Sampling distributions", "Inference", 90, 3),
        ("Confidence intervals", "Inference", 120, 4),
        ("Hypothesis tests", "Inference", 120, 4),
        ("Comparing two groups", "Inference", 90, 6),
        ("Chi-square tests", "Inference", 60, 6),
        ("Correlation and regression", "Models", 120, 0),
        ("Multiple regression", "Models", 120, 9),
        ("Analysis of variance", "Models", 90, 7),
        ("Nonparametric methods", "Models", 60, 6),
    ],
    "Distributed Systems": [
        ("Why distribute?", "Foundations", 60, None),
        ("Remote procedure calls", "Foundations", 90, 0),
        ("Time and clocks", "Foundations", 90, 0),
        ("Consistency models", "Replication", 120, 2),
        ("Primary-backup replication", "Replication", 90, 3),
        ("Consensus: Paxos", "Consensus", 120, 4),
        ("Consensus: Raft", "Consensus", 120, 4),
        ("Distributed transactions", "Transactions", 120, 3),
        ("Partitioning and sharding", "Scale", 90, None),
        ("Gossip and membership", "Scale", 60, None),
        ("Fault tolerance and failure detection", "Faults", 90, 2),
        ("Byzantine faults", "Faults", 90, 5),
        ("Case study: a replicated key-value store", "Practice", 120, 6),
    ],
    "Security": [
        ("Threat models", "Foundations", 60, None),
        ("Symmetric cryptography", "Cryptography", 120, None),
        ("Hashes and MACs", "Cryptography", 90, 1),
        ("Public-key cryptography", "Cryptography", 120, 1),
        ("Authentication and passwords", "Systems", 90, 2),
        ("Access control", "Systems", 90, 0),
        ("Memory safety and exploits", "Software", 120, None),
        ("Web security", "Software", 120, 4),
        ("Network security and TLS", "Networks", 90, 3),
        ("Privacy", "People", 60, None),
        ("Secure design principles", "Practice", 60, 0),
        ("Incident response", "Practice", 60, None),
    ],
    "Machine Learning": [
        ("What learning is", "Foundations", 60, None),
        ("Linear regression", "Supervised", 120, 0),
        ("Gradient descent", "Supervised", 90, 1),
        ("Logistic regression", "Supervised", 90, 2),
        ("Overfitting and regularisation", "Generalisation", 90, 1),
        ("Cross-validation and evaluation", "Generalisation", 90, 4),
        ("Decision trees and forests", "Supervised", 120, 5),
        ("Support vector machines", "Supervised", 90, 3),
        ("Neural networks", "Deep learning", 120, 2),
        ("Backpropagation", "Deep learning", 120, 8),
        ("Clustering", "Unsupervised", 90, None),
        ("Dimensionality reduction", "Unsupervised", 90, None),
        ("Fairness and honest evaluation", "Practice", 60, 5),
    ],
}


def syllabus_for(course_title: str) -> list[tuple[str, str, int, int | None]]:
    """The demo syllabus of a course, by the subject its title starts with (``Algorithms 2`` → Algorithms)."""
    for subject, topics in _SYLLABI.items():
        if course_title.startswith(subject):
            return topics
    return _SYLLABI["Algorithms"]


async def ensure_syllabus_demo(conn: asyncpg.Connection, course_ids: list[str]) -> int:
    """In the caller's transaction: a syllabus for each of ``course_ids`` without one; returns the topics added."""
    courses = await conn.fetch(
        "SELECT c.id, c.title FROM courses c WHERE c.id = ANY($1::text[])"
        " AND NOT EXISTS (SELECT 1 FROM syllabus_topics t WHERE t.course_id = c.id) ORDER BY c.id", course_ids)
    if not courses:
        return 0
    rows = [(c["id"], n, title, unit, minutes)
            for c in courses for n, (title, unit, minutes, _) in enumerate(syllabus_for(c["title"]), start=1)]
    ids = await conn.fetch(
        "INSERT INTO syllabus_topics (course_id, position, title, unit, est_minutes)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[])"
        " RETURNING id, course_id, position",
        *[list(column) for column in zip(*rows)])
    by_place = {(r["course_id"], r["position"]): r["id"] for r in ids}
    needs = [(by_place[(c["id"], n)], by_place[(c["id"], needs_index + 1)])
             for c in courses for n, (_, _, _, needs_index) in enumerate(syllabus_for(c["title"]), start=1)
             if needs_index is not None]
    if needs:
        await conn.execute(
            "INSERT INTO syllabus_prerequisites (topic_id, requires_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            [a for a, _ in needs], [b for _, b in needs])
    return len(rows)


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big") / 2**64


def demo_level(student_id: str, session_id: str) -> int:
    """An understanding level 1-5: the student's ability (most around 3-4, a few weaker or stronger)
    plus per-class variation."""
    ability = 1.6 + 3.2 * _unit("ability", student_id)
    level = round(ability + (_unit("class", student_id, session_id) - 0.5) * 1.6)
    return max(1, min(5, level))


async def ensure_syllabus_history(db: Database, now: datetime, course_ids: Sequence[str] | None = None) -> int:
    """Tag held, untagged sessions of courses with a syllabus (of ``course_ids``, default all) and record
    levels; returns the sessions tagged."""
    now = now.astimezone(timezone.utc)

    async def work(conn: asyncpg.Connection) -> int:
        sessions = await conn.fetch(
            "SELECT s.id, s.course_id, s.section_id, s.starts_at, extract(epoch FROM s.ends_at - s.starts_at) / 60 AS minutes,"
            " EXISTS (SELECT 1 FROM session_topics st WHERE st.session_id = s.id) AS tagged"
            " FROM class_sessions s WHERE s.status <> 'cancelled' AND s.ends_at <= $1"
            " AND ($2::text[] IS NULL OR s.course_id = ANY($2::text[]))"
            " AND EXISTS (SELECT 1 FROM syllabus_topics t WHERE t.course_id = s.course_id)"
            " ORDER BY s.course_id, s.starts_at, s.id", now, None if course_ids is None else list(course_ids))
        topics: dict[str, list[asyncpg.Record]] = {}
        for r in await conn.fetch("SELECT id, course_id, est_minutes FROM syllabus_topics"
                                  " WHERE course_id = ANY($1::text[]) ORDER BY course_id, position",
                                  list({s["course_id"] for s in sessions})):
            topics.setdefault(r["course_id"], []).append(r)
        # Per course (and section): where the syllabus has got to, continuing after tagged sessions.
        cursor: dict[tuple[str, str | None], int] = {}
        covered_max = {(r["course_id"], r["section_id"]): r["position"] for r in await conn.fetch(
            "SELECT s.course_id, s.section_id, max(t.position) AS position FROM session_topics st"
            " JOIN class_sessions s ON s.id = st.session_id JOIN syllabus_topics t ON t.id = st.topic_id"
            " GROUP BY s.course_id, s.section_id")}
        tags: list[tuple[str, int]] = []
        tagged_sessions: list[asyncpg.Record] = []
        for s in sessions:
            key = (s["course_id"], s["section_id"])
            at = cursor.setdefault(key, covered_max.get(key, 0))
            if s["tagged"]:
                continue
            course_topics = topics[s["course_id"]]
            if at >= len(course_topics):
                continue  # the syllabus is done: later sessions are revision
            budget, picked = float(s["minutes"]), list[int]()
            while at < len(course_topics) and (not picked or budget >= course_topics[at]["est_minutes"] * 0.5):
                picked.append(course_topics[at]["id"])
                budget -= course_topics[at]["est_minutes"]
                at += 1
                if len(picked) == 2:
                    break
            cursor[key] = at
            tags += [(s["id"], t) for t in picked]
            tagged_sessions.append(s)
        if not tags:
            return 0
        await conn.execute(
            "INSERT INTO session_topics (session_id, topic_id, tagged_by, tagged_at)"
            " SELECT s, t, $3, $4 FROM unnest($1::text[], $2::bigint[]) AS r (s, t) ON CONFLICT DO NOTHING",
            [s for s, _ in tags], [t for _, t in tags], SEED_ACTOR, now)
        present = await conn.fetch(
            "SELECT session_id, student_id, s.ends_at FROM attendance a JOIN class_sessions s ON s.id = a.session_id"
            " WHERE a.session_id = ANY($1::text[]) AND a.status IN ('present', 'late')",
            [s["id"] for s in tagged_sessions])
        levels = [(r["session_id"], r["student_id"], demo_level(r["student_id"], r["session_id"]), r["ends_at"])
                  for r in present]
        if levels:
            await conn.execute(
                "INSERT INTO topic_understanding (session_id, student_id, topic_id, level, recorded_by, at)"
                " SELECT s, u, NULL, l, $5, a FROM unnest($1::text[], $2::text[], $3::smallint[], $4::timestamptz[])"
                "   AS r (s, u, l, a) ON CONFLICT DO NOTHING",
                [x[0] for x in levels], [x[1] for x in levels], [x[2] for x in levels], [x[3] for x in levels],
                SEED_ACTOR)
        for course_id in sorted({s["course_id"] for s in tagged_sessions}):
            await refresh_progress(conn, course_id, now=now)
        return len(tagged_sessions)

    return await db.run(work, transaction=True)
