"""A Sphinx extension for the book (book/_config.yml loads it): one fix, so that every page opens
with a clean browser console."""


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    # Sphinx 7.4 lists a script that an extension registers while reading twice, once named None and
    # once '' (sphinx-thebe's `const THEBE_JS_URL = ...`): the repeated `const` throws on every page.
    seen = set()
    scripts = context["script_files"]
    for script in list(scripts):
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key in seen:
            scripts.remove(script)
        seen.add(key)


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
