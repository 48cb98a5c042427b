"""Versions of a chat's turns. Regenerate and Edit never overwrite: the new reply or the edited message is a
sibling of the old one (same parent), so a chat's messages form a tree. The conversation shown is the path
from the root to the chat's current message; a turn with siblings shows ‹ 2/3 › and can switch back.

Plain functions over (id, parent id) pairs, shared by the store (which keeps the tree in SQLite) and the
export formats (which keep it as parent indexes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Version:
    """Where a message stands among its siblings: `index` (1-based) of `count`, and their ids in order."""

    index: int
    count: int
    siblings: tuple[int, ...]


class MessageTree:
    def __init__(self, links: Iterable[tuple[int, int | None]]) -> None:
        """`links`: (message id, parent id or None) of every message of one chat."""
        self.parent: dict[int, int | None] = {}
        self.children: dict[int | None, list[int]] = {}
        for message, parent in sorted(links):
            self.parent[message] = parent
            self.children.setdefault(parent, []).append(message)

    def path(self, leaf: int | None) -> list[int]:
        """The ids from the root down to `leaf`; the newest path when `leaf` is None or unknown."""
        if leaf not in self.parent:
            leaf = self.latest_leaf(None)
        out: list[int] = []
        node = leaf
        while node is not None and len(out) <= len(self.parent):  # bounded even if the links had a loop
            out.append(node)
            node = self.parent.get(node)
        return out[::-1]

    def latest_leaf(self, start: int | None) -> int | None:
        """Follow the newest child from `start` (None: the roots) down to a message with none."""
        node = start
        for _ in range(len(self.parent) + 1):
            kids = self.children.get(node)
            if not kids:
                break
            node = kids[-1]
        return node

    def version(self, message: int) -> Version:
        siblings = tuple(self.children.get(self.parent.get(message), [message]))
        return Version(siblings.index(message) + 1, len(siblings), siblings)

    def descendants(self, message: int) -> list[int]:
        out: list[int] = []
        todo = list(self.children.get(message, []))
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(self.children.get(node, []))
        return out


def chain(n: int) -> list[int | None]:
    """Parent indexes of `n` messages that follow one another (a chat without versions)."""
    return [None, *range(n - 1)] if n else []


def path_indexes(parents: Sequence[int | None], current: int | None) -> list[int]:
    """The conversation shown, as indexes into `parents` (an export document's messages)."""
    return MessageTree(enumerate(parents)).path(current)
