"""Lead storage: one flow (`base.LeadStore`) over backends that supply a connection and a dialect."""
