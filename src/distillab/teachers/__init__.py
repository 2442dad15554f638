"""Frozen teachers and the content-addressed teacher store."""

from distillab.teachers.frozen import FrozenTeacher
from distillab.teachers.store import TeacherStore, load_teacher_weights

__all__ = ["FrozenTeacher", "TeacherStore", "load_teacher_weights"]
