"""Airflow-side helpers shared by the DAG files (not DAGs themselves: see dags/.airflowignore)."""
