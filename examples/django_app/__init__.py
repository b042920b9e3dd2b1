"""Django recipe: enqueue in ``transaction.on_commit``, tasks that use the ORM.

A minimal project: ``settings.py`` (SQLite in a temporary directory), one app
(``orders``: a model, a service function and a view that enqueue after the commit, and
a task that reads and updates the row through the ORM), and ``worker.py``, the module
``orch worker`` imports (it sets Django up, then registers the tasks).

Run it (from the repository's root, with a Redis at ORCH_REDIS_URL):

    export DJANGO_SETTINGS_MODULE=examples.django_app.settings
    python -m django migrate --run-syncdb                    # creates the table in the SQLite file
    orch worker --app examples.django_app.worker --queue orders
    python -c 'import django; django.setup(); \\
        from examples.django_app.orders.services import place_order; print(place_order("book", 2))'
"""
