"""The ground floor: where picsort's folders are, writing files atomically, the class-name vocabulary,
the CPU quota and memory a process may use, opening remote (http, s3) paths. Imports nothing of picsort.
"""
