"""Response playbooks: engine, actions and YAML playbooks. Filled by the playbooks issue."""
