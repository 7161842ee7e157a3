"""The Airflow side of the trading pipeline, shared by the DAG files (``dags/``) and the reports
plugin (``plugins/trading_reports_plugin.py``, whose pages are ``trading_airflow.ui``): the DAG and
task names, the results asset, storage through an Airflow connection, and the rule that bad input
fails a task at once.

An installed package (``pip install -e .``, baked into the Airflow image), so every Airflow
component imports it the same way: the dag-processor and the workers that run the DAGs, and the
api-server that serves the plugin, which has no DAG folder on its path. The business logic is in
``trading_lib``, which imports no Airflow; the partition pods' image installs only that.
"""
